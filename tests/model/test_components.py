import numpy as np

from model.components import label_components


def test_diagonal_pixels_join_and_separate_blobs_stay_apart():
    mask = np.array(
        [
            [1, 0, 0, 0, 1],
            [0, 1, 0, 0, 1],
            [0, 0, 0, 0, 0],
            [1, 1, 0, 1, 0],
        ],
        dtype=bool,
    )
    labels, count = label_components(mask)
    assert count == 4
    assert labels.tolist() == [
        [1, 0, 0, 0, 2],
        [0, 1, 0, 0, 2],
        [0, 0, 0, 0, 0],
        [3, 3, 0, 4, 0],
    ]


def test_u_shape_merges_into_one_component():
    mask = np.array([[1, 0, 1], [1, 0, 1], [1, 1, 1]], dtype=bool)
    labels, count = label_components(mask)
    assert count == 1
    assert set(np.unique(labels)) == {0, 1}


def test_empty_mask():
    labels, count = label_components(np.zeros((3, 5), dtype=bool))
    assert count == 0 and not labels.any()
