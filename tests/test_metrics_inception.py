"""Flax FID Inception port vs a test-only plain torch.nn reference of pytorch-fid's FIDInceptionV3."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

import jax.numpy as jnp  # noqa: E402

from study.metrics import fid as fid_cli  # noqa: E402
from study.metrics import inception  # noqa: E402


class BasicConv2d(nn.Module):
    def __init__(self, cin, cout, **kw):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kw)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class RefA(nn.Module):
    def __init__(self, cin, pool_features):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(cin, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, kernel_size=1)

    def forward(self, x):
        pool = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
        return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
                          self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))), self.branch_pool(pool)], 1)


class RefB(nn.Module):
    def __init__(self, cin):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x):
        return torch.cat([self.branch3x3(x), self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          F.max_pool2d(x, 3, stride=2)], 1)


class RefC(nn.Module):
    def __init__(self, cin, c7):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = x
        for i in range(1, 6):
            bd = getattr(self, f"branch7x7dbl_{i}")(bd)
        pool = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
        return torch.cat([self.branch1x1(x), b7, bd, self.branch_pool(pool)], 1)


class RefD(nn.Module):
    def __init__(self, cin):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x):
        b7 = x
        for i in range(1, 5):
            b7 = getattr(self, f"branch7x7x3_{i}")(b7)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, 3, stride=2)], 1)


class RefE(nn.Module):
    def __init__(self, cin, max_pool):
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(cin, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(cin, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x):
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        if self.max_pool:  # FIDInceptionE_2
            pool = F.max_pool2d(x, 3, stride=1, padding=1)
        else:  # FIDInceptionE_1
            pool = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
        return torch.cat([self.branch1x1(x), b3, bd, self.branch_pool(pool)], 1)


class RefFIDInception(nn.Module):
    """pytorch-fid's FIDInceptionV3 module tree (key names of pt_inception-2015-12-05-6726825d.pth)."""

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = RefA(192, 32), RefA(256, 64), RefA(288, 64)
        self.Mixed_6a = RefB(288)
        self.Mixed_6b, self.Mixed_6c, self.Mixed_6d, self.Mixed_6e = RefC(768, 128), RefC(768, 160), RefC(768, 160), RefC(768, 192)
        self.Mixed_7a = RefD(768)
        self.Mixed_7b, self.Mixed_7c = RefE(1280, False), RefE(2048, True)
        self.fc = nn.Linear(2048, 1008)

    def forward(self, x01):  # NCHW in [0, 1] -> (pool3, logits)
        x = F.interpolate(x01, size=(299, 299), mode="bilinear", align_corners=False) * 2 - 1
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), 3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        pool3 = x.mean(dim=(2, 3))
        return pool3, self.fc(pool3)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Random-weight reference: He-normal convs and near-identity BN keep activations O(1) through 94 layers.

    (Randomly calibrated BN statistics make the net ill-conditioned: float32 torch itself then
    drifts ~1e-3 from float64, so no float32 port could meet 1e-4. Here torch32 vs torch64 ~3e-6.)
    """
    torch.manual_seed(0)
    model = RefFIDInception()
    images = torch.rand(3, 3, 40, 40, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if isinstance(module, nn.BatchNorm2d):
                module.weight.uniform_(0.8, 1.2)
                module.bias.normal_(0.0, 0.1)
                module.running_mean.normal_(0.0, 0.1)
                module.running_var.uniform_(0.8, 1.2)
        model.eval()
        pool3, logits = model(images)
    path = tmp_path_factory.mktemp("weights") / "random_inception.pth"
    torch.save(model.state_dict(), path)
    return {"model": model, "path": path, "images": images.numpy().transpose(0, 2, 3, 1).copy(),
            "pool3": pool3.numpy(), "logits": logits.numpy(), "state_dict": model.state_dict()}


@pytest.fixture(scope="module")
def port(reference):
    return inception.FIDInception.from_file(reference["path"], resize="torch")


def test_port_matches_torch_reference(reference, port):
    pool3, logits = port.features_fn()(jnp.asarray(reference["images"]))
    assert np.asarray(pool3).shape == (3, 2048)
    assert reference["pool3"].std() > 0.3  # the comparison is not between near-zero vectors
    assert np.abs(np.asarray(pool3) - reference["pool3"]).max() <= 1e-4
    assert np.abs(np.asarray(logits) - reference["logits"]).max() <= 1e-4 * max(1.0, np.abs(reference["logits"]).max())


def test_batch_size_invariance(reference, port):
    apply = port.features_fn()
    whole, _ = apply(jnp.asarray(reference["images"]))
    single, _ = apply(jnp.asarray(reference["images"][1:2]))
    assert np.abs(np.asarray(whole)[1] - np.asarray(single)[0]).max() <= 1e-5


def test_every_key_consumed_and_wrong_file_rejected(reference, tmp_path):
    state = {k: v.numpy() for k, v in reference["state_dict"].items()}
    params = inception.params_from_state_dict(state)
    n_params = sum(np.asarray(leaf).size for leaf in __import__("jax").tree_util.tree_leaves(params))
    assert n_params == sum(v.size for k, v in state.items() if not k.endswith("num_batches_tracked"))
    missing = dict(state)
    del missing["Mixed_6b.branch7x7_2.conv.weight"]
    with pytest.raises(ValueError, match="1 missing keys"):
        inception.params_from_state_dict(missing)
    with pytest.raises(ValueError, match="1 unexpected keys"):
        inception.params_from_state_dict({**state, "AuxLogits.fc.weight": np.zeros((1000, 768), np.float32)})
    wrong = tmp_path / "wrong.pth"
    torch.save({"fc.weight": torch.zeros(10, 5)}, wrong)
    with pytest.raises(ValueError, match="not a pytorch-fid FID Inception state dict"):
        inception.FIDInception.from_file(wrong)


def test_tf1_resize_has_no_half_pixel_centres():
    # TF1 resize_bilinear(align_corners=False): source x = i * in/out; torch: (i + 0.5) * in/out - 0.5.
    np.testing.assert_allclose(inception.bilinear_matrix(2, 4, "tf"), [[1, 0], [0.5, 0.5], [0, 1], [0, 1]])
    np.testing.assert_allclose(inception.bilinear_matrix(2, 4, "torch"), [[1, 0], [0.75, 0.25], [0.25, 0.75], [0, 1]])


def test_fid_cli_on_npy_files(reference, port, tmp_path, capsys):
    images = (reference["images"] * 255).round().astype(np.uint8)  # [3, 40, 40, 3]: the shape compiled above
    a, b = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(a, images)
    np.save(b, images[:, :, ::-1].copy())
    features_out = tmp_path / "features.npy"
    args = [str(a), str(b), "--weights", str(reference["path"]), "--resize", "torch", "--batch-size", "3"]
    assert fid_cli.main(args + ["--features-out", str(features_out)]) == 0
    fid_ab = float(capsys.readouterr().out.split("FID:")[1])
    saved = np.load(features_out)
    assert saved.shape == (3, 2048) and saved.dtype == np.float32
    expected, _ = port.features_fn()(jnp.asarray(images, jnp.float32) / 255.0)
    np.testing.assert_allclose(saved, np.asarray(expected), atol=1e-6)
    assert fid_ab > 1e-3
    assert fid_cli.main([str(a), str(b), "--weights", str(tmp_path / "absent.pth")]) == 2
    assert "does not exist" in capsys.readouterr().err
