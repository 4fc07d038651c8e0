"""MODEL.WEIGHTS checks before training: URLs are fetched and read like local files, and torchvision-layout
weights are refused with a config whose input format does not match them."""

import os
import pickle

import pytest
import torch
from detectron2.utils.file_io import PathManager
from transfer_testutils import CONFIGS, depth_opts, make_cfg

from transfer.convert import convert_checkpoint
from transfer.errors import TransferError
from transfer.weights import resolve_weights

URL = "https://example.org/checkpoints/densecl_r18.pkl"
SSL_CONFIG = str(CONFIGS / "pascal_voc_R_50_C4_24k_ssl.yaml")
BGR_CONFIG = str(CONFIGS / "pascal_voc_R_50_C4_24k.yaml")


def _cfg(config: str, weights, tmp_path, *opts: str):
    return make_cfg(
        config, *depth_opts(18), "MODEL.WEIGHTS", str(weights), "OUTPUT_DIR", str(tmp_path), *opts
    )


@pytest.fixture()
def converted_r18(tmp_path, resnet_state_dicts):
    torch.save(resnet_state_dicts[18], tmp_path / "r18.pth")
    convert_checkpoint(tmp_path / "r18.pth", tmp_path / "r18.pkl")
    return tmp_path / "r18.pkl"


def _serve(monkeypatch, local_file) -> list[str]:
    """PathManager "downloads" every URL as `local_file`; returns the URLs it was asked for."""
    asked = []

    def get_local_path(url, **kwargs):
        asked.append(url)
        return str(local_file)

    monkeypatch.setattr(PathManager, "get_local_path", get_local_path)
    return asked


def test_a_url_is_fetched_and_loaded_from_the_local_copy(tmp_path, monkeypatch, converted_r18):
    asked = _serve(monkeypatch, converted_r18)
    assert resolve_weights(_cfg(SSL_CONFIG, URL, tmp_path)) == (str(converted_r18), "")
    assert asked == [URL]


class _Unsafe:
    """A pickled instance of this class needs a full unpickler."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_a_url_to_a_pickle_with_python_objects_is_refused(tmp_path, monkeypatch):
    malicious = tmp_path / "weights.pkl"
    malicious.write_bytes(pickle.dumps({"model": {}, "__author__": "x", "payload": _Unsafe()}))
    _serve(monkeypatch, malicious)
    with pytest.raises(TransferError, match=r"not a plain Detectron2 weight pickle .*posix\.system"):
        resolve_weights(_cfg(SSL_CONFIG, URL, tmp_path))


def test_a_url_to_a_raw_checkpoint_is_converted(tmp_path, monkeypatch, resnet_state_dicts):
    torch.save({"state_dict": resnet_state_dicts[18]}, tmp_path / "r18.pth")
    _serve(monkeypatch, tmp_path / "r18.pth")
    path, note = resolve_weights(_cfg(SSL_CONFIG, URL.replace(".pkl", ".pth"), tmp_path))
    assert path == str(tmp_path / "converted_weights.pkl") and "ResNet-18 backbone" in note


def test_a_url_that_cannot_be_fetched_names_the_fix(tmp_path, monkeypatch):
    def offline(url, **kwargs):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(PathManager, "get_local_path", offline)
    with pytest.raises(TransferError) as caught:
        resolve_weights(_cfg(SSL_CONFIG, URL, tmp_path))
    message = str(caught.value)
    assert f"MODEL.WEIGHTS {URL} could not be fetched (OSError: [Errno -3]" in message
    assert "Download it yourself and pass the local path as MODEL.WEIGHTS" in message


def test_converted_weights_need_the_torchvision_input(tmp_path, converted_r18):
    with pytest.raises(TransferError) as caught:
        resolve_weights(_cfg(BGR_CONFIG, converted_r18, tmp_path))
    message = str(caught.value)
    assert "a weight pickle written by 'densebench'" in message
    assert "INPUT.FORMAT BGR, MODEL.PIXEL_MEAN [103.53, 116.28, 123.675]" in message
    assert "MODEL.RESNETS.STRIDE_IN_1X1 True" in message and "`*_ssl.yaml` config" in message
    assert "set `INPUT.FORMAT RGB MODEL.PIXEL_MEAN '[123.675, 116.28, 103.53]'" in message


def test_only_the_wrong_input_keys_are_named(tmp_path, converted_r18):
    cfg = _cfg(SSL_CONFIG, converted_r18, tmp_path, "MODEL.PIXEL_STD", "[1.0, 1.0, 1.0]")
    with pytest.raises(TransferError, match=r"the config has MODEL\.PIXEL_STD \[1\.0, 1\.0, 1\.0\]\. Use"):
        resolve_weights(cfg)
    close = _cfg(SSL_CONFIG, converted_r18, tmp_path, "MODEL.PIXEL_STD", "[58.3955, 57.12, 57.375]")
    assert resolve_weights(close) == (str(converted_r18), "")


def test_a_raw_checkpoint_converted_on_the_fly_needs_the_torchvision_input(tmp_path, resnet_state_dicts):
    torch.save(resnet_state_dicts[18], tmp_path / "r18.pth")
    with pytest.raises(TransferError, match="a raw checkpoint, converted on the fly"):
        resolve_weights(_cfg(BGR_CONFIG, tmp_path / "r18.pth", tmp_path))


def test_random_init_and_other_authors_pickles_keep_any_input_format(tmp_path, converted_r18):
    assert resolve_weights(_cfg(BGR_CONFIG, "", tmp_path))[0] == ""
    with open(converted_r18, "rb") as f:
        model_zoo = pickle.load(f) | {"__author__": "Detectron2 Model Zoo"}
    with open(tmp_path / "zoo.pkl", "wb") as f:
        pickle.dump(model_zoo, f)
    assert resolve_weights(_cfg(BGR_CONFIG, tmp_path / "zoo.pkl", tmp_path)) == (
        str(tmp_path / "zoo.pkl"),
        "",
    )


def test_densecl_repos_own_conversion_needs_the_torchvision_input(tmp_path, converted_r18):
    """DenseCL's benchmarks/detection/convert-pretrain-to-detectron2.py writes `__author__` OpenSelfSup."""
    with open(converted_r18, "rb") as f:
        densecl = pickle.load(f) | {"__author__": "OpenSelfSup"}
    with open(tmp_path / "densecl.pkl", "wb") as f:
        pickle.dump(densecl, f)
    with pytest.raises(TransferError, match="a weight pickle written by 'OpenSelfSup'"):
        resolve_weights(_cfg(BGR_CONFIG, tmp_path / "densecl.pkl", tmp_path))


def test_converted_weights_get_the_permissions_of_a_plain_write(converted_r18):
    """Not mkstemp's owner-only 0600: a shared weights directory stays readable."""
    umask = os.umask(0)
    os.umask(umask)
    assert converted_r18.stat().st_mode & 0o777 == 0o666 & ~umask
