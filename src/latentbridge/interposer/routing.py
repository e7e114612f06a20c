"""The route planner: a direct model or a chain of models from one space to another, with its expected cost.

Every hop loses information, so the planner takes the fewest hops first, then prefers files already on disk,
then the least work (GFLOP per megapixel of the image the latent stands for).
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Sequence
from dataclasses import dataclass

from .. import spaces, weights
from ..errors import InputError
from .models import ModelEntry, discover


@dataclass(frozen=True)
class Route:
    """Models to apply in order (empty when source and target are the same space)."""

    src: str
    dst: str
    steps: tuple[ModelEntry, ...]

    @property
    def hops(self) -> int:
        return len(self.steps)

    @property
    def downloads(self) -> int:
        return sum(not s.local for s in self.steps)

    def gflops_per_megapixel(self) -> float:
        """Expected work: GFLOP per megapixel of the image the latent stands for."""
        return sum(s.gflops_per_megapixel() for s in self.steps)

    def cost(self) -> tuple[int, int, float]:
        """What the planner minimises: (hops, downloads, GFLOP per megapixel)."""
        return self.hops, self.downloads, self.gflops_per_megapixel()

    def describe(self) -> str:
        if not self.steps:
            return f"{self.src} -> {self.dst}: same space, only the domain changes"
        chain = " -> ".join([self.src, *(s.dst for s in self.steps)])
        kinds = ", ".join(f"{s.src}->{s.dst} ({s.arch}{'' if s.local else ', download'})" for s in self.steps)
        quality = [f"{s.src}->{s.dst}: " + ", ".join(f"{k} {v:.4g}" for k, v in s.metrics.items())
                   for s in self.steps if s.metrics]
        text = (f"{chain}: {self.hops} model{'s' if self.hops > 1 else ''} [{kinds}], expected cost "
                f"{self.gflops_per_megapixel():.2f} GFLOP per image megapixel")
        if self.hops > 1:
            text += "; each hop loses detail, so a chain is worse than a direct model would be"
        if quality:
            text += "; held-out quality " + "; ".join(quality)
        return text


def plan(src: str | spaces.LatentSpace, dst: str | spaces.LatentSpace, *, models: Sequence[ModelEntry] | None = None,
         models_dir: str | os.PathLike | None = None) -> Route:
    """The cheapest route from ``src`` to ``dst`` over ``models`` (default: :func:`discover`), or an
    :class:`InputError` that lists the conversions that are possible."""
    a, b = spaces.get(src), spaces.get(dst)
    if a is b:
        return Route(a.id, b.id, ())
    entries = list(discover(models_dir) if models is None else models)
    edges: dict[str, list[ModelEntry]] = {}
    for e in entries:
        edges.setdefault(spaces.get(e.src).id, []).append(e)
    # Dijkstra over (hops, downloads, gflops), all additive and non-negative.
    best: dict[str, tuple] = {a.id: (0, 0, 0.0)}
    heap: list[tuple[tuple, int, str, tuple[ModelEntry, ...]]] = [((0, 0, 0.0), 0, a.id, ())]
    tie = 0
    while heap:
        cost, _, node, path = heapq.heappop(heap)
        if node == b.id:
            return Route(a.id, b.id, path)
        if cost > best.get(node, cost):
            continue
        for e in edges.get(node, ()):
            nxt = spaces.get(e.dst).id
            new = (cost[0] + 1, cost[1] + (not e.local), cost[2] + e.gflops_per_megapixel())
            if nxt not in best or new < best[nxt]:
                best[nxt] = new
                tie += 1
                heapq.heappush(heap, (new, tie, nxt, (*path, e)))
    raise InputError(_impossible(a.id, b.id, entries, models_dir))


def reachable(entries: Sequence[ModelEntry]) -> dict[str, set[str]]:
    """For every source space, the spaces some chain of ``entries`` reaches."""
    out: dict[str, set[str]] = {}
    nodes = {spaces.get(e.src).id for e in entries}
    for start in nodes:
        seen, todo = set(), [start]
        while todo:
            n = todo.pop()
            for e in entries:
                if spaces.get(e.src).id == n and spaces.get(e.dst).id not in seen:
                    seen.add(spaces.get(e.dst).id)
                    todo.append(spaces.get(e.dst).id)
        out[start] = seen - {start}
    return out


def _impossible(src: str, dst: str, entries: Sequence[ModelEntry], models_dir) -> str:
    reach = reachable(entries)
    possible = "; ".join(f"{s} -> {', '.join(sorted(t))}" for s, t in sorted(reach.items())) or "none"
    where = f"in {models_dir}" if models_dir is not None else "in the model folders"
    mode = " (offline: the published v4.0 models on the hub were not considered)" if weights.offline() else ""
    return (f"no interposer route from {src} to {dst}: {len(entries)} model(s) found {where}{mode}. "
            f"Possible conversions: {possible}. Add a model for {src} -> {dst} (train one with "
            f"'latentbridge train configs/interposer-....toml') or a chain that links them")
