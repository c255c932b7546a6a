"""SMPL-22 skeleton constants: joint names, parents and the neutral rest offsets (metres, y up)."""
import numpy as np

JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck",
    "left_collar", "right_collar", "head", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist",
)
PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19)
NUM_JOINTS = 22

# Parent-relative rest offsets of the neutral SMPL body; the pelvis row is its offset from the SMPL origin.
REST_OFFSETS = np.array([
    [-0.001795, -0.223333, 0.028219], [0.069520, -0.091406, -0.006815], [-0.067670, -0.090522, -0.004320],
    [-0.002533, 0.108963, -0.026696], [0.034277, -0.375199, -0.004496], [-0.038290, -0.382569, -0.008850],
    [0.005487, 0.135180, 0.001092], [-0.013596, -0.397960, -0.043693], [0.015774, -0.398415, -0.042312],
    [0.001457, 0.052922, 0.025425], [0.026358, -0.055791, 0.119288], [-0.025372, -0.048144, 0.123348],
    [-0.002778, 0.213870, -0.042857], [0.078845, 0.121749, -0.034090], [-0.081759, 0.118833, -0.038615],
    [0.005152, 0.064970, 0.051349], [0.090977, 0.030469, -0.008868], [-0.096012, 0.032551, -0.009143],
    [0.259612, -0.012772, -0.027456], [-0.253742, -0.013329, -0.021401], [0.249234, 0.008986, -0.001171],
    [-0.255298, 0.007772, -0.005559],
])


def forward_kinematics(rotations, translation, offsets=REST_OFFSETS, parents=PARENTS):
    """Local rotations (T,J,3,3) and root position (T,3) -> global rotations (T,J,3,3) and positions (T,J,3).

    The root joint sits at `translation`; every other joint at parent position + parent global rotation @ offset.
    """
    rotations = np.asarray(rotations, np.float64)
    T, J = rotations.shape[:2]
    g_rot = np.empty_like(rotations)
    g_pos = np.empty((T, J, 3))
    for j, p in enumerate(parents[:J]):
        if p < 0:
            g_rot[:, j] = rotations[:, j]
            g_pos[:, j] = translation
        else:
            g_rot[:, j] = g_rot[:, p] @ rotations[:, j]
            g_pos[:, j] = g_pos[:, p] + np.einsum("tij,j->ti", g_rot[:, p], offsets[j])
    return g_rot, g_pos
