"""Numpy-only motion library: rotations, SMPL constants, motion formats, retargeting, foot cleanup.

It runs inside Blender's Python and in the backend, so it imports numpy and the standard library only.

Retargeting (see each module's docstring):
- skeleton.Skeleton            a rig as arrays (names, parents, bone.matrix_local, lengths, matrix_world)
- mapping.auto_map / Mapping   role -> bone maps from presets/*.json or the rig's shape; save/load JSON
- transfer.retarget            Motion -> TargetAnimation (pose_bone.rotation_quaternion / location arrays)
- feet.cleanup_feet            foot-sliding cleanup on the target body (contacts, pins, leg IK)
- metrics                      limb-direction error, foot skate, penetration, jitter, bone lengths
"""
