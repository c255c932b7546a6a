"""The FSQ motion tokenizer: Haar patching against PyWavelets, FSQ indices, strict loading, the fixture."""
import numpy as np
import pytest
import pywt
import torch

from models.checkpoint import CheckpointError
from models.fsq import FSQ, HaarPatcher, HaarUnpatcher
from models.manifest import TokenizerConfig, load_config
from models.motion_tokenizer import MotionTokenizer, load_motion_tokenizer
from tests.conftest import shared_path


def pywt_packet(x, levels):
    """Wavelet-packet split with PyWavelets' Haar, in the patcher's channel order, halved per level."""
    bands = [x]
    for _ in range(levels):
        nxt_low, nxt_high = [], []
        for b in bands:
            cA, cD = pywt.dwt(b, "haar", axis=-1)
            nxt_low.append(cA / 2)
            nxt_high.append(cD / 2)  # both take the detail as (x0 - x1)/√2
        bands = [np.concatenate(nxt_low, 1), np.concatenate(nxt_high, 1)]
        bands = [np.concatenate(bands, 1)]
    return bands[0]


@pytest.mark.parametrize("patch", [1, 2, 4])
def test_haar_patcher_matches_pywavelets_and_inverts_exactly(patch):
    x = torch.randn(2, 5, 32, dtype=torch.float64)
    y = HaarPatcher(patch).double()(x)
    assert y.shape == (2, 5 * patch, 32 // patch)
    np.testing.assert_allclose(y.numpy(), pywt_packet(x.numpy(), patch.bit_length() - 1), atol=1e-12)
    back = HaarUnpatcher(patch).double()(y)
    np.testing.assert_allclose(back.numpy(), x.numpy(), atol=1e-12)


def test_haar_patcher_rejects_non_power_of_two():
    with pytest.raises(ValueError, match="power of two"):
        HaarPatcher(3)


@pytest.mark.parametrize("levels", [[8, 8, 8, 5, 5, 5], [8, 5, 5, 5], [7, 5, 5, 5, 5]])
def test_fsq_indices_cover_the_codebook_and_round_trip(levels):
    fsq = FSQ(levels, code_dim=16)
    n = int(np.prod(levels))
    assert fsq.codebook_size == n
    idx = torch.arange(n)
    level_idx = (idx[:, None] // fsq.basis) % fsq.levels
    assert len({tuple(r) for r in level_idx.tolist()}) == n
    # decode(i) projected back through a projection that inverts project_out must give i again
    with torch.no_grad():
        fsq.project_out.weight.copy_(torch.randn(16, len(levels)))
        fsq.project_out.bias.zero_()
        fsq.project_in.weight.copy_(torch.linalg.pinv(fsq.project_out.weight))
        fsq.project_in.bias.zero_()
        # project_in(decode) gives the normalised codes; encode bounds them with tanh, so instead compare codes
        codes = (level_idx - fsq.levels // 2) / (fsq.levels // 2)
        recovered = fsq.project_in(fsq.decode(idx))
    np.testing.assert_allclose(recovered.numpy(), codes.numpy(), atol=1e-4)
    z = torch.randn(1000, 16) * 3
    assert int(fsq.encode(z).min()) >= 0 and int(fsq.encode(z).max()) < n


def tiny():
    model = shared_path("conformance", "motionmillion-tiny", "model")
    return load_config(model)


def test_tiny_tokenizer_reproduces_reference_codes_and_reconstruction():
    cfg = tiny()
    tok = load_motion_tokenizer(cfg.path(cfg.tokenizer.file), cfg.tokenizer)
    ref = np.load(shared_path("conformance", "motionmillion-tiny", "expected", "motion_00.npz"))
    mean, std = np.load(cfg.path("mean.npy")), np.load(cfg.path("std.npy"))
    x = torch.from_numpy((ref["features"] - mean) / std).float()[None]
    codes = tok.encode(x)[0].numpy()
    assert np.array_equal(codes, ref["codes"])
    rec = tok.decode(torch.from_numpy(ref["codes"]).long()[None])[0].double().numpy() * std + mean
    np.testing.assert_allclose(rec, ref["reconstruction"], atol=1e-5)


@pytest.mark.parametrize("patch,down_t,levels", [(2, 1, [8, 5, 5, 5]), (4, 2, [8, 8, 8, 5, 5, 5]), (1, 2, [7, 5, 5, 5, 5])])
def test_sizes_are_read_from_tensor_shapes(tmp_path, patch, down_t, levels):
    net = MotionTokenizer(levels, 272, width=24, code_dim=12, down_t=down_t, stride_t=2, depth=2, patch_size=patch)
    state = {"module.vqvae." + k: v for k, v in net.state_dict().items()}
    torch.save({"net": state}, tmp_path / "tok.pth")
    cfg = TokenizerConfig(levels=tuple(levels))  # the manifest's widths are the release's; the shapes must win
    loaded = load_motion_tokenizer(tmp_path / "tok.pth", cfg)
    assert loaded.frames_per_token == 2 ** down_t * patch
    x = torch.randn(1, 8 * loaded.frames_per_token, 272)
    codes = loaded.encode(x)
    assert codes.shape == (1, 8)
    assert torch.equal(codes, net.encode(x))
    assert loaded.decode(codes).shape == x.shape


def test_truncated_checkpoint_names_the_file(tmp_path):
    cfg = tiny()
    data = open(cfg.path(cfg.tokenizer.file), "rb").read()
    bad = tmp_path / "tokenizer.pth"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="tokenizer.pth.*(truncated|unreadable)"):
        load_motion_tokenizer(bad, cfg.tokenizer)


def test_wrong_shape_is_reported_with_the_tensor_name(tmp_path):
    cfg = tiny()
    blob = torch.load(cfg.path(cfg.tokenizer.file), weights_only=True)
    blob["net"]["vqvae.decoder.model.5.weight"] = torch.zeros(272, 64, 5)
    torch.save(blob, tmp_path / "t.pth")
    with pytest.raises(CheckpointError, match=r"decoder\.model\.5\.weight.*\(272, 64, 5\).*\(272, 64, 3\)"):
        load_motion_tokenizer(tmp_path / "t.pth", cfg.tokenizer)


class NotATensor:
    pass


def test_pickles_with_arbitrary_objects_are_refused(tmp_path):
    torch.save({"net": {"w": NotATensor()}}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match=r"evil\.pth: holds a pickled object of \S*NotATensor; refused"):
        load_motion_tokenizer(tmp_path / "evil.pth", TokenizerConfig())


def test_levels_that_do_not_fit_the_quantizer_are_reported(tmp_path):
    cfg = tiny()
    with pytest.raises(CheckpointError, match="levels"):
        load_motion_tokenizer(cfg.path(cfg.tokenizer.file), TokenizerConfig(levels=(8, 5, 5, 5)))
