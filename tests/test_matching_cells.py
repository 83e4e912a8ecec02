"""Cells of the matcher at the frame's edges and with another patch size (PROTOCOL §6), by hand."""
import numpy as np
import pytest
import torch

from sdfuse.errors import ConfigError
from sdfuse.protocol.matching import index_to_pixel, keypoint_rows, match_keypoints


def test_keypoint_rows_clip_the_flat_index_at_the_frame_edges():
    grid, frame = 4, 64                                          # cells of 16 px
    kps = np.array([[0.0, 0.0],                                  # cell (0, 0): index 0, kept
                    [-20.0, 0.0],                                # int(-1.25) = -1: index -1, clipped up to 0
                    [64.0, 64.0],                                # cell (4, 4): 4·4 + 4 = 20, clipped down to 15
                    [63.9, 0.0]])                                # cell (3, 0): index 3
    assert keypoint_rows(kps, grid, frame).tolist() == [0, 0, 15, 3]


def test_index_to_pixel_uses_the_patch_it_is_given():
    # index 5 on a 4-wide grid is cell (1, 1); with 16-px cells its centre is 16·1 + 7.5
    assert index_to_pixel(np.array([5, 0]), 4, patch=16).tolist() == [[23.5, 23.5], [7.5, 7.5]]


def test_match_keypoints_takes_the_cell_size_from_the_frame():
    grid, frame = 4, 64                                          # cells of 16 px, not the default 14
    src = torch.eye(16)
    trg = torch.roll(src, shifts=1, dims=0)                      # target token t + 1 equals source token t
    pred = match_keypoints(src, trg, np.array([[20.0, 3.0]]), grid, frame)  # cell (1, 0) → index 1 → target 2
    assert pred.tolist() == [[2 * 16 + 7.5, 7.5]]


def test_match_keypoints_refuses_a_frame_of_fractional_cells():
    with pytest.raises(ConfigError, match="58 px"):
        match_keypoints(torch.eye(16), torch.eye(16), np.array([[20.0, 3.0]]), 4, 58)
