from __future__ import annotations

from pathlib import Path

import pytest

from sslbench.data import discovery, load_dataset, locate
from sslbench.errors import UserError


def test_flag_beats_env_beats_cache_beats_debian(
    isolated_search: Path, make_idx_dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    flag, env = isolated_search / "flag", isolated_search / "env"
    cache = isolated_search / "xdg-cache" / "sslbench" / "datasets"
    for i, root in enumerate((flag, env, cache, discovery.DEBIAN_ROOT)):
        make_idx_dataset(root / "fashion-mnist", fill=i)
    monkeypatch.setenv("SSLBENCH_DATA", str(env))

    assert locate("fashion-mnist", flag).folder == flag / "fashion-mnist"
    assert locate("fashion-mnist").folder == env / "fashion-mnist"
    monkeypatch.delenv("SSLBENCH_DATA")
    assert locate("fashion-mnist").folder == cache / "fashion-mnist"
    (cache / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz").unlink()  # incomplete: skipped
    assert locate("fashion-mnist").folder == discovery.DEBIAN_ROOT / "fashion-mnist"

    data = load_dataset("fashion-mnist", flag, download=False)
    assert data.source == str(flag / "fashion-mnist")
    assert int(data.train_images.max()) == 0  # the flag's copy (fill=0) was read


def test_home_cache_when_no_xdg(
    isolated_search: Path, make_idx_dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("XDG_CACHE_HOME")
    folder = make_idx_dataset(
        isolated_search / "home" / ".cache" / "sslbench" / "datasets" / "mnist"
    )
    assert locate("mnist").folder == folder


def test_root_may_be_the_dataset_folder_with_plain_files(
    isolated_search: Path, make_idx_dataset
) -> None:
    folder = make_idx_dataset(isolated_search / "plain", gz=False)
    assert not list(folder.glob("*.gz"))
    located = locate("mnist", folder)
    assert located.folder == folder
    assert located.searched == (folder / "mnist", folder)
    data = load_dataset("mnist", folder, download=False)
    assert data.train_images.shape == (6, 1, 28, 28)
    assert data.test_labels.tolist() == [0, 1, 2, 3]


def test_nothing_found_is_one_line_naming_places_and_remedies(isolated_search: Path) -> None:
    with pytest.raises(UserError) as info:
        load_dataset("fashion-mnist", isolated_search / "nowhere", download=False)
    message = str(info.value)
    assert "\n" not in message
    for place in locate("fashion-mnist", isolated_search / "nowhere").searched:
        assert str(place) in message
    assert "--data-dir" in message and "SSLBENCH_DATA" in message
    assert "apt-get install dataset-fashion-mnist" in message


def test_failed_download_is_one_line_user_error(
    isolated_search: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Offline:
        def __init__(self, root: str, train: bool, download: bool) -> None:
            raise RuntimeError(
                "Error downloading train-images-idx3-ubyte.gz:\nTried ... [Errno -3]"
            )

    monkeypatch.setattr(discovery, "_torchvision_class", lambda name: Offline)
    with pytest.raises(UserError) as info:
        load_dataset("fashion-mnist")
    assert "\n" not in str(info.value)
    assert "download failed: Error downloading train-images-idx3-ubyte.gz" in str(info.value)
    assert not (discovery.cache_root() / "fashion-mnist" / "_torchvision").exists()


def test_download_lands_in_user_cache(
    isolated_search: Path, make_idx_dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    class FakeTorchvision:  # writes raw files where torchvision's MNIST classes put them
        def __init__(self, root: str, train: bool, download: bool) -> None:
            make_idx_dataset(Path(root) / "FashionMNIST" / "raw", fill=3)

    monkeypatch.setattr(discovery, "_torchvision_class", lambda name: FakeTorchvision)
    data = load_dataset("fashion-mnist")
    cache = discovery.cache_root() / "fashion-mnist"
    assert data.source == str(cache)
    assert sorted(p.name for p in cache.iterdir()) == sorted(data.info.files)
    assert locate("fashion-mnist").folder == cache  # found offline next time
