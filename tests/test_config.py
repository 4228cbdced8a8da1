import pytest

from sslbench.config import parse_overrides, to_yaml
from sslbench.errors import ConfigError
from sslbench.resolve import config_from_dict, resolve_config


def test_defaults_and_method_section():
    cfg = resolve_config("byol")
    assert cfg.method_name == "byol"
    assert cfg.method.ema_decay == 0.99
    assert cfg.data.dataset == "fashion-mnist"
    assert cfg.eval.protocols == ["linear"]


def test_layers_apply_in_order(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  epochs: 7\n  batch_size: 128\noptimizer.lr: 0.01\n")
    cfg = resolve_config("byol", config_file=f, flags={"train.batch_size": 512},
                         overrides=["optimizer.lr=2e-3", "method.ema_decay=0.996"])
    assert cfg.train.epochs == 7  # file
    assert cfg.train.batch_size == 512  # flag beats file
    assert cfg.optimizer.lr == 2e-3  # override beats file
    assert cfg.method.ema_decay == 0.996


def test_dataset_defaults_apply_before_user_values():
    cfg = resolve_config("simclr", flags={"data.dataset": "synthetic"})
    assert cfg.model.width == 16
    cfg = resolve_config("simclr", overrides=["data.dataset=synthetic", "model.width=8"])
    assert cfg.model.width == 8


def test_coercion_of_types():
    cfg = resolve_config("simclr", overrides=["train.amp=false", "train.gpus=none",
                                              "eval.protocols=linear", "model.backbone=resnet18"])
    assert cfg.train.amp is False and cfg.train.gpus is None
    assert cfg.model.backbone == "resnet18"


@pytest.mark.parametrize(("overrides", "message"), [
    (["optimizer.lrr=1"], "unknown config key 'optimizer.lrr'"),
    (["nosuch.key=1"], "unknown config key 'nosuch.key'"),
    (["optimizer.lr=fast"], "optimizer.lr='fast' is not a valid float"),
    (["optimizer.lr=-0.1"], "optimizer.lr=-0.1 is out of range"),
    (["train.batch_size=0"], "train.batch_size=0 is out of range"),
    (["train.epochs=2.5"], "train.epochs='2.5' is not a valid int"),
    (["method.ema_decay=1.5"], "method.ema_decay=1.5 is out of range: must be in [0.0, 1.0]"),
    (["method.ema_decay=-0.1"], "method.ema_decay=-0.1 is out of range"),
    (["train.amp=maybe"], "train.amp='maybe' is not a valid bool"),
    (["model.backbone=vgg"], "model.backbone='vgg' is not allowed"),
    (["optimizer.lr=nan"], "optimizer.lr='nan' must be a finite number"),
    (["optimizer=1"], "is a section"),
    (["lr"], "is not of the form key=value"),
    (["data.dataset=imagenet-21k"], "unknown dataset 'imagenet-21k'"),
    (["eval.protocols=linear,nope"], "unknown evaluation protocol 'nope'"),
    (["augment.crop_min_scale=0.9", "augment.crop_max_scale=0.5"], "is larger than"),
    (["method.name=simclr"], "method.name cannot be changed"),
])
def test_bad_values_are_one_line_errors(overrides, message):
    with pytest.raises(ConfigError) as info:
        resolve_config("byol", overrides=overrides)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_unknown_method():
    expected = r"unknown method 'simclrr': choose one of .*byol, .*simclr"
    with pytest.raises(ConfigError, match=expected):
        resolve_config("simclrr")


def test_bad_config_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_config("simclr", config_file=tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        resolve_config("simclr", config_file=bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        resolve_config("simclr", config_file=scalar)


def test_round_trip_through_dict_and_yaml():
    import yaml

    cfg = resolve_config("byol", overrides=["method.ema_decay=0.9", "train.epochs=3"])
    again = config_from_dict(cfg.to_dict())
    assert again == cfg
    assert again.config_hash() == cfg.config_hash()
    assert yaml.safe_load(to_yaml(cfg))["method"]["ema_decay"] == 0.9
    assert resolve_config("byol").config_hash() != cfg.config_hash()


def test_parse_overrides_keeps_equals_in_value():
    assert parse_overrides(["data.data_dir=/a=b"]) == {"data.data_dir": "/a=b"}


# --- datasets, backbones and per-view augmentation (issue 4, part C) -------------------------

def test_view_overrides_apply_to_one_view_only():
    cfg = resolve_config("byol", overrides=["augment.blur_prob=1.0", "augment.view2.blur_prob=0.1",
                                            "augment.view2.solarize_prob=0.2"])
    view1, view2 = cfg.augment.view(1), cfg.augment.view(2)
    assert (view1.blur_prob, view1.solarize_prob) == (1.0, 0.0)
    assert (view2.blur_prob, view2.solarize_prob) == (0.1, 0.2)
    assert view1.crop_min_scale == view2.crop_min_scale == cfg.augment.crop_min_scale
    rebuilt = config_from_dict(cfg.to_dict())  # a stored config rebuilds the same views
    assert rebuilt.augment.view(2) == view2 and rebuilt.config_hash() == cfg.config_hash()


@pytest.mark.parametrize("overrides, message", [
    (["augment.view2.blur_prob=1.5"], r"augment.view2.blur_prob=1.5 is out of range"),
    (["augment.view1.hue=0.6"], r"augment.view1.hue=0.6 is out of range: must be in \[0.0, 0.5\]"),
    (["augment.view2.crop_min_scale=0.9", "augment.crop_max_scale=0.5"],
     r"augment.view2.crop_min_scale=0.9 is larger than augment.crop_max_scale=0.5"),
    (["augment.view2.gamma=1"], r"unknown config key 'augment.view2.gamma': augment.view2 has"),
    (["augment.view2=1"], r"'augment.view2' is a section"),
    (["model.stem=vgg"], r"model.stem='vgg' is not allowed: choose one of cifar, imagenet"),
    (["data.image_size=64"], r"data.image_size=64 applies to the imagefolder dataset only"),
    (["data.dataset=imagefolder", "data.image_size=4"], r"data.image_size=4 is out of range"),
])
def test_bad_augment_model_data_values(overrides, message):
    with pytest.raises(ConfigError, match=message):
        resolve_config("simclr", overrides=overrides)


@pytest.mark.parametrize("dataset", ["mnist", "cifar10", "cifar100", "stl10", "imagefolder"])
def test_every_dataset_is_accepted_with_its_defaults(dataset):
    cfg = resolve_config("simclr", overrides=[f"data.dataset={dataset}"])
    rgb = dataset not in ("mnist",)
    assert cfg.model.backbone == ("resnet18" if rgb else "convnet")
    assert (cfg.augment.grayscale_prob > 0) == rgb and (cfg.augment.hue > 0) == rgb
    assert cfg.model.stem == ("imagenet" if dataset in ("stl10", "imagefolder") else "cifar")


def test_cifar10_defaults_and_resnet50():
    cfg = resolve_config("simclr", overrides=["data.dataset=cifar10", "model.backbone=resnet50"])
    assert cfg.model.backbone == "resnet50" and cfg.augment.crop_min_scale == 0.08
    assert (cfg.augment.saturation, cfg.augment.hue, cfg.augment.jitter_prob) == (0.4, 0.1, 0.8)
    cfg = resolve_config("simclr", overrides=["data.dataset=imagefolder",
                                              "data.class_list=in100.txt", "data.image_size=64"])
    assert (cfg.data.class_list, cfg.data.image_size) == ("in100.txt", 64)
