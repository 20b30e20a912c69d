"""Which split each image goes to, keeping every duplicate group in one split.

A group (one image alone, or a set of duplicates) goes to
1. test, if a member comes from a source's own test split: the standard test set stays
   intact (all of its members are kept) and copies elsewhere are dropped;
2. else val, if a member comes from a source's own val split (one copy kept);
3. else it is "pooled" and placed by a seeded draw, stratified by class, per source:
   a source without its own test (val) split gives ``test_fraction`` (``val_fraction``)
   of its pooled groups to test (val); the rest is train (one copy kept).
A group whose members disagree on the label never reaches train or val.
Where a source names its people (``Entry.person``), whole people are drawn instead of images:
no person is in two splits, and the fractions are fractions of its people.

FER2013 keeps its whole test set in ``test/``: ``PublicTest_*`` files are the usual
validation set and go to val, ``PrivateTest_*`` are the standard test set.
With ``keep_source_splits=False`` every group is pooled.
"""
from __future__ import annotations

import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import numpy as np

from emorec.data.sources import Entry

SPLITS = ("train", "val", "test")


def home_split(entry: Entry, keep_source_splits: bool) -> str | None:
    """The split a source itself puts an image in (None: no split, or splits ignored)."""
    if not keep_source_splits or entry.split is None:
        return None
    if entry.split == "test" and PurePosixPath(entry.name).name.startswith("PublicTest"):
        return "val"
    return entry.split


@dataclass
class Plan:
    dest: list[str | None]  # per entry: train / val / test, or None when dropped
    group: list[int]  # per entry: duplicate group number (1, 2, ...), 0 when unique
    leak: list[bool]  # kept val/test file whose group had another member in a source's train split
    conflict: list[bool]  # its group carries more than one label
    dropped: Counter = field(default_factory=Counter)  # reason -> files


def assign_splits(entries: list[Entry], roots: np.ndarray, seed: int, val_fraction: float,
                  test_fraction: float, keep_source_splits: bool = True,
                  fractions: dict[str, tuple[float | None, float | None]] | None = None) -> Plan:
    """``roots``: per entry, its duplicate component (see :func:`dedup.find_groups`);
    ``fractions``: a source's own (val, test) fractions where they differ from the global ones."""
    n = len(entries)
    home = [home_split(e, keep_source_splits) for e in entries]
    members: dict[int, list[int]] = defaultdict(list)
    for i, r in enumerate(np.asarray(roots).tolist()):
        members[r].append(i)
    plan = Plan([None] * n, [0] * n, [False] * n, [False] * n)
    source_has = defaultdict(set)
    for e, h in zip(entries, home):
        source_has[e.source].add(h)

    pooled: dict[tuple[str, str], list[list[int]]] = defaultdict(list)
    people: dict[str, dict[str, list[list[int]]]] = defaultdict(lambda: defaultdict(list))
    number = 0
    for group in members.values():  # ordered by first member, so numbering is stable
        conflict = len({entries[i].label for i in group}) > 1
        if len(group) > 1:
            number += 1
            for i in group:
                plan.group[i], plan.conflict[i] = number, conflict
        homes = {home[i] for i in group}
        if "test" in homes:
            _place(plan, group, "test", [i for i in group if home[i] == "test"], home, entries)
        elif "val" in homes:
            keep = [] if conflict else [next(i for i in group if home[i] == "val")]
            _place(plan, group, "val", keep, home, entries)
        elif conflict:
            plan.dropped["conflict"] += len(group)
        else:
            first = entries[group[0]]
            if first.person:
                people[first.source][first.person].append(group)
            else:
                pooled[(first.source, first.label)].append(group)

    def counts(source: str, n: int) -> tuple[int, int]:
        val, test = (fractions or {}).get(source, (None, None))
        val, test = val_fraction if val is None else val, test_fraction if test is None else test
        return (0 if "test" in source_has[source] else int(round(test * n)),
                0 if "val" in source_has[source] else int(round(val * n)))

    for (source, label), groups in sorted(pooled.items()):
        rng = np.random.default_rng([seed, zlib.crc32(source.encode()), zlib.crc32(label.encode())])
        order = rng.permutation(len(groups))
        n_test, n_val = counts(source, len(groups))
        for rank, g in enumerate(order):
            split = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
            _place(plan, groups[g], split, [groups[g][0]], home, entries, pooled=True)
    for source, by_person in sorted(people.items()):
        names = sorted(by_person)
        order = np.random.default_rng([seed, zlib.crc32(source.encode())]).permutation(len(names))
        n_test, n_val = counts(source, len(names))
        for rank, p in enumerate(order):
            split = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
            for group in by_person[names[p]]:
                _place(plan, group, split, [group[0]], home, entries, pooled=True)
    return plan


def _place(plan: Plan, group: list[int], split: str, keep: list[int], home: list, entries: list[Entry],
           pooled: bool = False) -> None:
    """Keep ``keep`` in ``split``; count the other members as dropped, with the reason."""
    for i in group:
        if i in keep:
            plan.dest[i] = split
            plan.leak[i] = split != "train" and any(entries[j].split == "train" for j in group if j != i)
        elif not keep:
            plan.dropped["conflict"] += 1
        else:
            plan.dropped["duplicate" if pooled or home[i] == split else "cross_split"] += 1
