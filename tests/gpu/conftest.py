"""Tests marked `cuda` need a CUDA GPU: without one each is skipped with the reason (tests/gpu/device_check.sh runs
them all, with the 7B benchmark, on a GPU machine)."""
import pytest


def pytest_collection_modifyitems(config, items):
    import torch
    if torch.cuda.is_available():
        return
    reason = (f"no CUDA GPU here (torch {torch.__version__}, torch.cuda.is_available() is False): "
              "run tests/gpu/device_check.sh on a GPU machine")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))
