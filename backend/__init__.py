"""MotionMill's generation backend: `python -m backend` (generate, encode, serve, bench, doctor)."""
__version__ = "0.1.0"
