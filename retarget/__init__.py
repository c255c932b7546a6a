"""Numpy-only motion library: rotations, SMPL constants, motion formats, retargeting, foot cleanup.

It runs inside Blender's Python and in the backend, so it imports numpy and the standard library only.
"""
