"""Connected-component labelling of a binary image, 8-connected.

Strip segmentation needs only this one routine from an image-processing library; pulling in
SciPy (tens of megabytes) into the serving image for it is not worth it. The algorithm works on
horizontal runs rather than pixels, so its Python loop runs once per run of ink in a row (a
few thousand for a 30-digit strip), not once per pixel.
"""

from __future__ import annotations

import numpy as np


def _runs(row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) columns of the runs of True in a 1-D boolean row."""
    padded = np.concatenate(([False], row, [False]))
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return edges[0::2], edges[1::2]


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Label the 8-connected components of ``mask``.

    Returns ``(labels, count)``: an int32 array the shape of ``mask`` where background is 0 and
    each component holds one label in 1..count, numbered in order of first appearance
    (top-to-bottom, left-to-right).
    """
    mask = np.asarray(mask, dtype=bool)
    parent: list[int] = [0]

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    row_runs: list[tuple[np.ndarray, np.ndarray, list[int]]] = []
    previous: tuple[np.ndarray, np.ndarray, list[int]] | None = None
    for y in range(mask.shape[0]):
        starts, ends = _runs(mask[y])
        ids: list[int] = []
        for start, end in zip(starts.tolist(), ends.tolist()):
            label = 0
            if previous is not None:
                p_starts, p_ends, p_ids = previous
                # 8-connectivity: a run above touches if it overlaps [start - 1, end + 1).
                lo = int(np.searchsorted(p_ends, start, side="left"))
                hi = int(np.searchsorted(p_starts, end, side="right"))
                for k in range(lo, hi):
                    other = find(p_ids[k])
                    if label == 0:
                        label = other
                    elif other != label:
                        keep, drop = min(label, other), max(label, other)
                        parent[drop] = keep
                        label = keep
            if label == 0:
                label = len(parent)
                parent.append(label)
            ids.append(label)
        previous = (starts, ends, ids)
        row_runs.append(previous)

    # Resolve every provisional label to its root, then renumber the roots 1..count.
    roots = [find(x) for x in range(len(parent))]
    renumber = np.zeros(len(parent), dtype=np.int32)
    count = 0
    for x, root in enumerate(roots):
        if x == 0:
            continue
        if root == x:
            count += 1
            renumber[x] = count
    labels = np.zeros(mask.shape, dtype=np.int32)
    for y, (starts, ends, ids) in enumerate(row_runs):
        for start, end, label in zip(starts.tolist(), ends.tolist(), ids):
            labels[y, start:end] = renumber[roots[label]]
    return labels, count
