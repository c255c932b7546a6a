"""Moving-window filters along the frame axis (numpy only)."""
import numpy as np


def moving_average(x, w):
    """Centred moving average over w frames along axis 0, the ends held."""
    if w <= 1 or len(x) < 2:
        return x
    k = np.ones(w) / w
    pad = w // 2
    xp = np.concatenate([np.repeat(x[:1], pad, 0), x, np.repeat(x[-1:], w - 1 - pad, 0)], 0)
    out = np.empty_like(x)
    flat = xp.reshape(len(xp), -1)
    for c in range(flat.shape[1]):
        out.reshape(len(x), -1)[:, c] = np.convolve(flat[:, c], k, mode="valid")
    return out


def moving_max(x, w):
    """Centred moving maximum over w frames of a 1-D series, the ends held. With an odd w, moving_average(moving_max(x,
    w), w) >= x everywhere: a smooth envelope over x."""
    if w <= 1:
        return x
    pad = w // 2
    xp = np.concatenate([np.repeat(x[:1], pad), x, np.repeat(x[-1:], w - 1 - pad)])
    return np.lib.stride_tricks.sliding_window_view(xp, w).max(-1)
