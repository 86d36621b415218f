"""Where behaviour changes: measured buckets of the event log cut into phases (`llmfail replay`).

A `Bucket` holds what one stretch of time saw: arrivals, and per model its
attempts and how they failed. `find_runs` groups consecutive buckets into runs
of alike behaviour by likelihood (binary segmentation, with a pair of cuts for
a stretch that differs in the middle of calm), keeping only the cuts that
still hold once the buckets around them are left out; `settle_mixed` then
takes a short run that behaves between its neighbours for the bucket a change
fell in, and places the change inside it between the two attempts that
explain it best. Pure functions of counts: no store, no clock.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import pairwise


@dataclass
class Bucket:
    """What one stretch of the log saw: arrivals, and per model its attempts and their failures."""

    arrivals: int = 0
    attempts: Counter[str] = field(default_factory=Counter)
    faults: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))

    def add(self, other: Bucket) -> None:
        self.arrivals += other.arrivals
        self.attempts.update(other.attempts)
        for model, counts in other.faults.items():
            self.faults[model].update(counts)

    def rate(self, model: str, word: str) -> float:
        tried = self.attempts[model]
        return self.faults[model][word] / tried if tried else 0.0


#: How much better (in log-likelihood) two phases must explain the buckets than one, to split.
SPLIT_GAIN = 10.0


class _Cuts:
    """Where behaviour changes: binary segmentation of the buckets by likelihood.

    Each model's attempts are a multinomial (answered, or failed each way) and
    arrivals a Poisson count per bucket; a stretch is cut where two phases
    explain it better than one by more than SPLIT_GAIN (or three, by half as
    much again: an outage in the middle of calm, which one cut alone may not
    show), then each part again.
    A bucket in which a model made no attempt adds nothing to that model's
    figures, so a stretch where it was benched never causes a cut by itself.
    """

    def __init__(self, buckets: Sequence[Bucket], models: Sequence[str], lengths: Sequence[float]) -> None:
        self.size = len(buckets)
        self.arrivals = self._prefix([b.arrivals for b in buckets])
        self.times = self._prefix(lengths)  # the last bucket may be longer: it takes the remainder
        self.series: list[tuple[list[float], list[list[float]]]] = []  # per model: attempts, each category
        for model in models:
            words = sorted({w for b in buckets for w in b.faults[model]})
            tried = [b.attempts[model] for b in buckets]
            failed = [[b.faults[model][w] for b in buckets] for w in words]
            answered = [t - sum(f[i] for f in failed) for i, t in enumerate(tried)]
            if any(tried):
                self.series.append((self._prefix(tried), [self._prefix(c) for c in (answered, *failed)]))

    @staticmethod
    def _prefix(values: Sequence[float]) -> list[float]:
        out = [0.0]
        for v in values:
            out.append(out[-1] + v)
        return out

    def _fit(self, i: int, j: int) -> float:
        """Log-likelihood of buckets [i, j) as one phase (constants left out)."""
        total = 0.0
        arrived = self.arrivals[j] - self.arrivals[i]
        if arrived > 0:
            total += arrived * math.log(arrived / (self.times[j] - self.times[i])) - arrived
        for tried, categories in self.series:
            n = tried[j] - tried[i]
            for category in categories:
                c = category[j] - category[i]
                if c > 0:
                    total += c * math.log(c / n)
        return total

    def cuts(self, i: int = 0, j: int | None = None) -> list[int]:
        """The bucket indexes where a new phase starts, within [i, j)."""
        j = self.size if j is None else j
        if j - i < 2:
            return []
        whole = self._fit(i, j)
        fit = [self._fit(i, k) for k in range(i, j + 1)]  # fit[k - i]: buckets [i, k)
        tail = [self._fit(k, j) for k in range(i, j + 1)]
        one, at = max((fit[k - i] + tail[k - i] - whole - SPLIT_GAIN, k) for k in range(i + 1, j))
        # A stretch that differs in the middle of one that does not: one cut alone may not show it.
        two, a, b = max(
            (
                (fit[a - i] + self._fit(a, b) + tail[b - i] - whole - 1.5 * SPLIT_GAIN, a, b)
                for a in range(i + 1, j - 1)
                for b in range(a + 1, j)
            ),
            default=(-math.inf, 0, 0),
        )
        if max(one, two) <= 0:
            return []
        if one >= two:
            return [*self.cuts(i, at), at, *self.cuts(at, j)]
        return [*self.cuts(i, a), a, *self.cuts(a, b), b, *self.cuts(b, j)]


@dataclass
class Run:
    """Consecutive buckets of alike behaviour, [start, end) in seconds from the first arrival;
    `core` leaves out the buckets at its cuts."""

    first: int
    length: int
    total: Bucket
    core: Bucket
    start: float
    end: float
    arrivals: float

    def measured(self, model: str) -> Bucket:
        """Where `model`'s fault shares are read: a bucket a cut falls in holds some of both
        neighbours' behaviour, so the shares come from the buckets between the cuts when
        the model was tried there."""
        return self.core if self.core.attempts[model] else self.total


def find_runs(
    buckets: Sequence[Bucket],
    models: Sequence[str],
    bucket: float,
    duration: float,
    evidence: Sequence[Bucket] | None = None,
) -> list[Run]:
    """The buckets grouped into runs of alike behaviour.

    `evidence` (default: `buckets`) is what the cuts are judged on: the buckets plus what is
    known without an attempt (a model benched between two failures alike was failing that way
    throughout); the runs' figures, hence the fault shares, come from `buckets` alone."""
    lengths = [bucket] * (len(buckets) - 1) + [duration - bucket * (len(buckets) - 1)]
    judged = buckets if evidence is None else evidence
    edges = _supported([0, *_Cuts(judged, models, lengths).cuts(), len(buckets)], judged, models, lengths)
    runs: list[Run] = []
    for first, stop in pairwise(edges):
        total, core = Bucket(), Bucket()
        inner = range(first + (first > 0), stop - (stop < len(buckets)))
        for index in range(first, stop):
            total.add(buckets[index])
            if index in inner:
                core.add(buckets[index])
        end = duration if stop == len(buckets) else stop * bucket
        runs.append(Run(first, stop - first, total, core, first * bucket, end, total.arrivals))
    return runs


def _fault_fit(bucket: Bucket, models: Sequence[str]) -> float:
    """Log-likelihood of the models' outcomes in `bucket` under one share per outcome."""
    total = 0.0
    for model in models:
        tried = bucket.attempts[model]
        counts = bucket.faults[model].values()
        for count in (tried - sum(counts), *counts):
            if count > 0:
                total += count * math.log(count / tried)
    return total


def _arrival_fit(arrived: float, seconds: float) -> float:
    return arrived * math.log(arrived / seconds) - arrived if arrived > 0 and seconds > 0 else 0.0


def _sum(buckets: Sequence[Bucket]) -> Bucket:
    total = Bucket()
    for bucket in buckets:
        total.add(bucket)
    return total


def _supported(
    edges: list[int], buckets: Sequence[Bucket], models: Sequence[str], lengths: Sequence[float]
) -> list[int]:
    """`edges` without the cuts that only the buckets around them support.

    The bucket a change falls in mixes both sides, and a segmentation may cut
    around such a bucket rather than at the change. A cut stays when the faults
    on its two sides, leaving out the bucket on either side of it, still differ
    by more than SPLIT_GAIN, or when the arrivals do; the weakest cut goes first. A run too short
    to judge that way keeps its cuts between two others (it is where a change fell, see
    `settle_mixed`), but at either end of the window it is judged with its edge buckets: a
    stretch of chance at the start or the end is no phase of its own.
    """
    edges = list(edges)
    last = len(buckets)
    while len(edges) > 2:
        weakest: tuple[float, int] | None = None
        for index in range(1, len(edges) - 1):
            a, k, b = edges[index - 1], edges[index], edges[index + 1]
            left, right = _sum(buckets[a + (a > 0) : k - 1]), _sum(buckets[k + 1 : b - (b < last)])
            if not any(left.attempts[m] and right.attempts[m] for m in models):
                if a > 0 and b < last:
                    continue  # too short to judge without its edges: `settle_mixed` places the change
                # at an end of the window nothing comes after to share it out with: judged whole
                left, right = _sum(buckets[a:k]), _sum(buckets[k:b])
            both = _sum([left, right])
            faults = _fault_fit(left, models) + _fault_fit(right, models) - _fault_fit(both, models)
            arrivals = (
                _arrival_fit(sum(x.arrivals for x in buckets[a:k]), sum(lengths[a:k]))
                + _arrival_fit(sum(x.arrivals for x in buckets[k:b]), sum(lengths[k:b]))
                - _arrival_fit(sum(x.arrivals for x in buckets[a:b]), sum(lengths[a:b]))
            )
            gain = max(faults, arrivals)
            if gain <= SPLIT_GAIN and (weakest is None or gain < weakest[0]):
                weakest = (gain, index)
        if weakest is None:
            return edges
        del edges[weakest[1]]
    return edges


def settle_mixed(
    runs: list[Run],
    models: Sequence[str],
    trials: dict[str, list[tuple[float, str | None]]],
    arrivals: Sequence[float],
) -> list[Run]:
    """A run of one or two buckets between two others, behaving in between them, is where a change
    fell (a bucket holding some of each side, and maybe one more that happened to look alike): it
    is shared out instead, the change placed at the attempt where the neighbours' behaviours
    explain its attempts best, judged on the model whose fault share differs most between them.
    So a phase shorter than three buckets that behaves between its neighbours is not told apart
    from a change: the resolution of one bucket."""
    out: list[Run] = []
    for index, run in enumerate(runs):
        before = out[-1] if out else None
        after = runs[index + 1] if index + 1 < len(runs) else None
        series = _mix(before, run, after, models) if before and after and run.length <= 2 else None
        if before is None or after is None or series is None:
            out.append(run)
            continue
        model, word, ra, rb = series
        cut = _change_at([(t, w == word) for t, w in trials[model] if run.start <= t < run.end], ra, rb, run)
        cut = float(round(cut)) if run.end - run.start >= 10 else round(cut, 3)  # whole seconds read better
        early = bisect_left(arrivals, cut) - bisect_left(arrivals, run.start)
        before.end, after.start = cut, cut
        before.arrivals += early
        after.arrivals += run.arrivals - early
    return out


def _change_at(seen: Sequence[tuple[float, bool]], ra: float, rb: float, run: Run) -> float:
    """When outcomes `seen` (time, faulted) switched from share `ra` to share `rb`: the cut between
    two attempts (or at an end of `run`) under which they are likeliest."""

    def fit(faulted: bool, share: float) -> float:
        share = min(0.99, max(0.01, share))
        return math.log(share if faulted else 1 - share)

    score = sum(fit(f, rb) for _, f in seen)  # every attempt after the cut
    best, at = score, 0
    for k, (_, faulted) in enumerate(seen, 1):
        score += fit(faulted, ra) - fit(faulted, rb)
        if score > best:
            best, at = score, k
    if at == 0:
        return run.start
    if at == len(seen):
        return run.end
    return (seen[at - 1][0] + seen[at][0]) / 2


def _mix(before: Run, run: Run, after: Run, models: Sequence[str]) -> tuple[str, str, float, float] | None:
    """(model, fault, share before, share after) of the fault that tells `before` and `after` apart
    most, when `run` behaves between them; None when it is no mix of the two."""
    best: tuple[float, tuple[str, str, float, float]] | None = None
    for model in models:
        a, b = before.measured(model), after.measured(model)
        if not (a.attempts[model] and b.attempts[model] and run.total.attempts[model]):
            continue
        for word in set(a.faults[model]) | set(b.faults[model]):
            ra, rb, rm = a.rate(model, word), b.rate(model, word), run.total.rate(model, word)
            if abs(ra - rb) < 0.2:
                continue
            share = (rm - rb) / (ra - rb)
            if not -0.15 <= share <= 1.15:  # not between them: a behaviour of its own
                return None
            if best is None or abs(ra - rb) > best[0]:
                best = (abs(ra - rb), (model, word, ra, rb))
    return best[1] if best else None
