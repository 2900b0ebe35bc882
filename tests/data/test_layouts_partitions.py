"""NTU-25 adjacency partitions pinned against matrices derived by hand from the published code.

The edge list is ST-GCN's / 2s-AGCN's ``ntu_rgb_d`` list (1-based, as published); the expected
entries below were worked out on paper from it (degrees, hop distances to the spine shoulder),
not by calling `Layout.adjacency`. 0-based joints: 0 spine base, 1 spine mid, 2 neck, 3 head,
4-7 left shoulder/elbow/wrist/hand, 8-11 right, 12-15 left hip/knee/ankle/foot, 16-19 right,
20 spine shoulder (the graph centre), 21/22 left hand tip/thumb, 23/24 right hand tip/thumb.
"""

from __future__ import annotations

import numpy as np
import pytest

from sscl.data.layouts import get_layout, layout_names

# 2s-AGCN's inward_ori_index == ST-GCN's neighbor_1base for NTU RGB+D (child -> towards centre).
NTU_EDGES_1BASED = [
    (1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9),
    (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18),
    (20, 19), (22, 23), (23, 8), (24, 25), (25, 12),
]  # fmt: skip

# Hop<=1 degree (self loop included) of every joint, counted from the list above.
DEGREE = {
    0: 4, 1: 3, 2: 3, 3: 2, 4: 3, 5: 3, 6: 3, 7: 3, 8: 3, 9: 3, 10: 3, 11: 3, 12: 3, 13: 3,
    14: 3, 15: 2, 16: 3, 17: 3, 18: 3, 19: 2, 20: 5, 21: 2, 22: 3, 23: 2, 24: 3,
}  # fmt: skip

# Columns w (output joints) of each subset as {input v: weight}; every other entry is 0.
# "spatial" (ST-GCN paper): root, centripetal (v nearer the spine shoulder than w), centrifugal.
SPATIAL_COLUMNS = {
    20: ({20: 1 / 5}, {}, {1: 1 / 5, 2: 1 / 5, 4: 1 / 5, 8: 1 / 5}),
    1: ({1: 1 / 3}, {20: 1 / 3}, {0: 1 / 3}),
    0: ({0: 1 / 4}, {1: 1 / 4}, {12: 1 / 4, 16: 1 / 4}),
    2: ({2: 1 / 3}, {20: 1 / 3}, {3: 1 / 3}),
    3: ({3: 1 / 2}, {2: 1 / 2}, {}),
    7: ({7: 1 / 3}, {6: 1 / 3}, {22: 1 / 3}),
    22: ({22: 1 / 3}, {7: 1 / 3}, {21: 1 / 3}),
    21: ({21: 1 / 2}, {22: 1 / 2}, {}),
    11: ({11: 1 / 3}, {10: 1 / 3}, {24: 1 / 3}),
    24: ({24: 1 / 3}, {11: 1 / 3}, {23: 1 / 3}),
    23: ({23: 1 / 2}, {24: 1 / 2}, {}),
}
# Row 20 (the spine shoulder as input): it feeds its 4 neighbours centripetally, at 1/deg(w).
SPATIAL_ROW_20 = ({20: 1 / 5}, {1: 1 / 3, 2: 1 / 3, 4: 1 / 3, 8: 1 / 3}, {})

# "stgcn" (ST-GCN's graph.py, hop distances only up to 1): d' = 0 for joint 20, 1 for 1, 2, 4,
# 8, infinity for the rest; subset 1 = neighbours with d'[v] >= d'[w], subset 2 = d'[v] < d'[w].
STGCN_COLUMNS = {
    20: ({20: 1 / 5}, {1: 1 / 5, 2: 1 / 5, 4: 1 / 5, 8: 1 / 5}, {}),
    1: ({1: 1 / 3}, {0: 1 / 3}, {20: 1 / 3}),
    0: ({0: 1 / 4}, {12: 1 / 4, 16: 1 / 4}, {1: 1 / 4}),
    3: ({3: 1 / 2}, {}, {2: 1 / 2}),
    7: ({7: 1 / 3}, {6: 1 / 3, 22: 1 / 3}, {}),
    22: ({22: 1 / 3}, {7: 1 / 3, 21: 1 / 3}, {}),
    21: ({21: 1 / 2}, {22: 1 / 2}, {}),
}
# Subset 2 in full: the 8 edges leaving the spine shoulder or one of its neighbours outwards.
STGCN_SUBSET2 = {
    (20, 1): 1 / 3, (20, 2): 1 / 3, (20, 4): 1 / 3, (20, 8): 1 / 3,
    (1, 0): 1 / 4, (2, 3): 1 / 2, (4, 5): 1 / 3, (8, 9): 1 / 3,
}  # fmt: skip

# "agcn" (2s-AGCN): I; In[v, w] = 1 for v = w's neighbour towards joint 20; Out[v, w] =
# 1 / (number of w's neighbours away from 20).
AGCN_COLUMNS = {
    20: ({20: 1.0}, {}, {1: 1 / 4, 2: 1 / 4, 4: 1 / 4, 8: 1 / 4}),
    1: ({1: 1.0}, {20: 1.0}, {0: 1.0}),
    0: ({0: 1.0}, {1: 1.0}, {12: 1 / 2, 16: 1 / 2}),
    7: ({7: 1.0}, {6: 1.0}, {22: 1.0}),
    22: ({22: 1.0}, {7: 1.0}, {21: 1.0}),
    21: ({21: 1.0}, {22: 1.0}, {}),
    11: ({11: 1.0}, {10: 1.0}, {24: 1.0}),
    24: ({24: 1.0}, {11: 1.0}, {23: 1.0}),
    23: ({23: 1.0}, {24: 1.0}, {}),
    3: ({3: 1.0}, {2: 1.0}, {}),
}
LEAVES = (3, 15, 19, 21, 23)  # head, feet, hand tips


def _column(entries: dict[int, float]) -> np.ndarray:
    col = np.zeros(25)
    for v, weight in entries.items():
        col[v] = weight
    return col


def _check_columns(a: np.ndarray, columns: dict) -> None:
    for w, subsets in columns.items():
        for k, entries in enumerate(subsets):
            np.testing.assert_allclose(a[k, :, w], _column(entries), atol=1e-7, err_msg=(k, w))


def test_ntu25_bones_are_the_published_edge_list():
    lay = get_layout("ntu25")
    edges = {frozenset((i - 1, j - 1)) for i, j in NTU_EDGES_1BASED}
    assert {frozenset(b) for b in lay.bones} == edges
    degree = np.diag(np.ones(25))
    for c, p in lay.bones:
        degree[c, p] = degree[p, c] = 1
    assert dict(enumerate(degree.sum(axis=0).astype(int).tolist())) == DEGREE


@pytest.mark.isa
def test_ntu25_spatial_partition_by_hand():
    a = get_layout("ntu25").adjacency("spatial")
    _check_columns(a, SPATIAL_COLUMNS)
    for k, entries in enumerate(SPATIAL_ROW_20):
        np.testing.assert_allclose(a[k, 20], _column(entries), atol=1e-7)
    # Column sums: root 1/deg; centripetal 1/deg except the centre's 0; all subsets together 1.
    inv_deg = np.array([1 / DEGREE[w] for w in range(25)])
    np.testing.assert_allclose(a[0].sum(0), inv_deg, rtol=1e-6)
    np.testing.assert_allclose(a[1].sum(0), np.where(np.arange(25) == 20, 0, inv_deg), rtol=1e-6)
    np.testing.assert_allclose(a.sum(axis=(0, 1)), np.ones(25), rtol=1e-6)


@pytest.mark.isa
def test_ntu25_stgcn_code_partition_by_hand():
    a = get_layout("ntu25").adjacency("stgcn")
    _check_columns(a, STGCN_COLUMNS)
    expected2 = np.zeros((25, 25))
    for (v, w), weight in STGCN_SUBSET2.items():
        expected2[v, w] = weight
    np.testing.assert_allclose(a[2], expected2, atol=1e-7)
    assert np.count_nonzero(a[1]) == 48 - 8
    # Same total matrix as the paper's partition; only the split differs.
    np.testing.assert_allclose(a.sum(0), get_layout("ntu25").adjacency("spatial").sum(0))


@pytest.mark.isa
def test_ntu25_agcn_partition_by_hand():
    a = get_layout("ntu25").adjacency("agcn")
    _check_columns(a, AGCN_COLUMNS)
    np.testing.assert_array_equal(a[0], np.eye(25))
    # In: exactly the published inward edges (i -> j gives In[j, i] = 1, 2s-AGCN's edge2mat).
    inward = np.zeros((25, 25))
    for i, j in NTU_EDGES_1BASED:
        inward[j - 1, i - 1] = 1.0
    np.testing.assert_array_equal(a[1], inward)
    # Column sums: In 1 except the centre's; Out 1 except the leaves'.
    np.testing.assert_allclose(a[1].sum(0), np.where(np.arange(25) == 20, 0.0, 1.0))
    np.testing.assert_allclose(a[2].sum(0), np.where(np.isin(np.arange(25), LEAVES), 0.0, 1.0))
    np.testing.assert_array_equal(a[2] > 0, inward.T > 0)


@pytest.mark.parametrize("name", layout_names())
def test_agcn_partition_any_layout(name):
    lay = get_layout(name)
    a = lay.adjacency("agcn")
    v = lay.num_joints
    assert a.shape == (3, v, v) and a.dtype == np.float32
    np.testing.assert_array_equal(a[0], np.eye(v))
    # Every joint but the graph centre takes exactly one In edge, from a tree neighbour.
    hop = lay.hop_distance()
    assert set(np.flatnonzero(a[1].sum(0) == 0)) == {lay.graph_center}
    assert np.all(hop[a[1] > 0] == 1) and np.all(hop[a[2] > 0] == 1)
    np.testing.assert_array_equal(a[2] > 0, a[1].T > 0)  # Out reverses In
    sums = a[2].sum(0)
    assert np.allclose(sums[sums > 0], 1.0)
    stgcn = lay.adjacency("stgcn")
    np.testing.assert_allclose(stgcn.sum(0), lay.adjacency("spatial").sum(0), rtol=1e-6)
