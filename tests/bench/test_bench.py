"""The benchmarks' bookkeeping on tiny synthetic settings: ratios, clocks, view sources, FLOP
counts and the recorded runs (never their speed)."""

from __future__ import annotations

import sqlite3
import types
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from sslbench.bench.conventional import LoaderViews, TwoViewPILDataset, pil_transform
from sslbench.bench.flops import peak_tflops
from sslbench.bench.throughput import (
    PreparedViews,
    StepClock,
    Throughput,
    ThroughputSettings,
    measure,
    random_dataset,
)
from sslbench.bench.time_to_accuracy import time_to_accuracy
from sslbench.cli import main
from sslbench.config import ViewAugmentConfig
from sslbench.data import load_dataset
from sslbench.resolve import resolve_config
from sslbench.store import Store
from sslbench.train.flops import training_flops_per_image


def tiny_cfg(method: str = "simclr", *extra: str):  # type: ignore[no-untyped-def]
    return resolve_config(method, overrides=["data.dataset=synthetic", "train.batch_size=8",
                                             "model.width=4", "train.gpus=0", *extra])


def test_ratios_and_medians() -> None:
    result = Throughput.from_rounds({"real": [70.0, 80.0, 95.0], "ceiling": [100.0, 90.0, 110.0],
                                     "conventional": [40.0, 10.0, 41.0]})
    assert (result.real, result.ceiling, result.conventional) == (80.0, 100.0, 40.0)
    summary = result.summary()
    assert summary["overhead"] == pytest.approx(0.2)  # 1 - 80/100
    assert summary["real_over_conventional"] == pytest.approx(2.0)
    assert summary["ceiling_over_conventional"] == pytest.approx(2.5)
    without = Throughput.from_rounds({"real": [50.0], "ceiling": [100.0]}).summary()
    assert without == {"real_img_s": 50.0, "ceiling_img_s": 100.0, "overhead": 0.5}


def test_step_clock_marks_the_warmup_and_the_last_step() -> None:
    clock = StepClock(warmup=2, last=5, device=torch.device("cpu"))
    for step in range(1, 6):
        clock(step)
    assert sorted(clock.marks) == [2, 5] and clock.seconds() >= 0


def test_prepared_views_cycle() -> None:
    views = [torch.full((1,), float(i)) for i in range(3)]
    maker = PreparedViews(views)
    served = [maker(torch.empty(0), torch.Generator(), view=1 + i % 2).item() for i in range(7)]
    assert served == [0, 1, 2, 0, 1, 2, 0]


def test_pil_pipeline_gives_two_normalised_views_per_image() -> None:
    cfg = ViewAugmentConfig(crop_min_scale=1.0, crop_min_ratio=1.0, crop_max_ratio=1.0,
                            hflip_prob=0.0, jitter_prob=0.0)
    images = load_dataset("synthetic").train_images[:4]
    transform = pil_transform(cfg, mean=(0.5,), std=(0.25,), size=28, channels=1)
    views = LoaderViews(TwoViewPILDataset(images, transform, transform), batch_size=4, workers=0)
    view1 = views(images, torch.Generator(), view=1)
    view2 = views(images, torch.Generator(), view=2)
    assert view1.shape == view2.shape == (4, 1, 28, 28)
    # identity settings: both views are the normalised images (in the loader's shuffled order)
    torch.testing.assert_close(view1, view2)
    expected = (images.float() / 255 - 0.5) / 0.25
    distances = torch.cdist(view1.flatten(1), expected.flatten(1))
    assert distances.min(dim=1).values.max() < 1e-4


def test_rgb_transform_covers_the_colour_recipe() -> None:
    cfg = ViewAugmentConfig(saturation=0.4, hue=0.1, grayscale_prob=0.2, blur_prob=0.5,
                            solarize_prob=0.2, rotation_prob=0.5)
    names = [type(t).__name__ for t in pil_transform(cfg, mean=(0.5,) * 3, std=(0.2,) * 3,
                                                     size=32, channels=3).transforms]
    assert names.count("RandomApply") == 3 and "RandomGrayscale" in names
    assert "RandomSolarize" in names and names[-2:] == ["ToTensor", "Normalize"]


def test_measure_times_every_path_each_round() -> None:
    cfg = tiny_cfg()
    dataset = load_dataset("synthetic")
    settings = ThroughputSettings(steps=2, warmup=1, rounds=2, workers=0)
    result = measure(cfg, dataset, torch.device("cpu"), settings, echo=lambda line: None)
    assert set(result.rounds) == {"real", "ceiling"} and result.conventional is None
    assert all(len(r) == 2 and min(r) > 0 for r in result.rounds.values())


def test_flops_of_a_linear_step_are_counted_by_hand() -> None:
    class LinearMethod(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.Linear(5, 3, bias=False)

        def training_step(self, views: list[torch.Tensor]):  # type: ignore[no-untyped-def]
            return self.layer(torch.cat(views)).sum(), {}

    views = (torch.randn(4, 5), torch.randn(4, 5))
    # forward 2·(2B)·5·3, backward (weight gradient only) the same: per image 2 · 2 · 2 · 15
    assert training_flops_per_image(LinearMethod(), views) == 2 * 2 * 2 * 15


def test_peak_tflops_of_known_gpus() -> None:
    assert peak_tflops("cuda:NVIDIA H100 80GB HBM3") == 989.0
    assert peak_tflops("cuda:NVIDIA RTX A6000") == 154.8
    assert peak_tflops("cuda:Some Other GPU") is None


def test_random_dataset_has_the_shape_of_the_named_one() -> None:
    data = random_dataset("cifar10", 6)
    assert data.train_images.shape == (6, 3, 32, 32) and data.train_images.dtype == torch.uint8
    assert data.info.name == "cifar10" and data.source == "random(seed=0)"


def test_time_to_accuracy_runs_a_complete_schedule_per_budget(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each budget is a run of its own, planned to end there (not one schedule probed on the
    way): with every training step taking 1 s on the clock, the 5 s and 8 s budgets train 5 and
    8 steps, and the 8 s run's schedule is planned for 8 steps after its 3 timed ones."""
    import sslbench.bench.time_to_accuracy as tta

    cfg = tiny_cfg("simclr", "train.plan_steps=3")
    full = load_dataset("synthetic")
    dataset = replace(full, train_images=full.train_images[:40])  # 5 steps of 8 an epoch
    now = [0.0]
    totals: list[list[float]] = []
    build = tta.build_method

    def training_step(self, views: list[torch.Tensor]):  # type: ignore[no-untyped-def]
        now[0] += 1.0
        return type(self).training_step(self, views)

    def on_train_step_end(self, step: int, total: float) -> dict[str, float]:
        totals[-1].append(total)
        return type(self).on_train_step_end(self, step, total)

    def ticking(*args, **kwargs):  # type: ignore[no-untyped-def]
        method = build(*args, **kwargs)
        totals.append([])
        method.training_step = types.MethodType(training_step, method)
        method.on_train_step_end = types.MethodType(on_train_step_end, method)
        return method

    def probe(method: torch.nn.Module) -> float:
        now[0] += 100.0  # probing is not training
        return 0.25

    monkeypatch.setattr(tta, "build_method", ticking)
    curve = time_to_accuracy(cfg, dataset, torch.device("cpu"), budgets_s=[8.0, 5.0],
                             probe=probe, clock=lambda: now[0])
    assert [(p.budget_s, p.steps, p.top1) for p in curve] == [(5.0, 5, 0.25), (8.0, 8, 0.25)]
    assert [p.train_s for p in curve] == pytest.approx([5.0, 8.0])
    inf = float("inf")
    assert totals == [[inf, inf, 5, 5, 5], [inf, inf, 8, 8, 8, 8, 8, 8]]


def test_the_baselines_probe_the_untrained_encoder_and_the_pixels() -> None:
    """The random-init baseline is the recipe's probe on the encoder as built with its seed, at
    its layer (a grid readout included); the raw-pixel one the same probe on the flattened,
    standardised images."""
    from sslbench.bench.time_to_accuracy import baselines, linear_top1
    from sslbench.eval.features import extract_features
    from sslbench.eval.linear import linear_probe
    from sslbench.methods import build_method
    from sslbench.train.device import seed_everything

    cfg = tiny_cfg("simclr", "eval.linear.epochs=3", "eval.linear.layer=backbone:grid2")
    dataset = load_dataset("synthetic")
    cpu = torch.device("cpu")
    got = baselines(cfg, dataset, cpu)
    seed_everything(cfg.train.seed)
    assert got["random init"] == linear_top1(build_method(cfg, dataset.info.channels), cfg,
                                             dataset, cpu)
    info = dataset.info
    train_x, test_x = (extract_features(torch.nn.Flatten(), x, info.mean, info.std, cpu)
                       for x in (dataset.train_images, dataset.test_images))
    assert train_x.shape[1] == info.channels * info.image_size ** 2
    pixels = linear_probe(train_x, dataset.train_labels, test_x, dataset.test_labels,
                          info.num_classes, cfg.eval.linear, seed=cfg.train.seed, device=cpu)
    assert got["raw pixels"] == pixels["top1"]


@pytest.fixture
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("SSLBENCH_DB", raising=False)
    return tmp_path / "bench.sqlite"


def test_throughput_is_recorded_as_a_bench_run(db: Path, capsys: pytest.CaptureFixture[str]
                                               ) -> None:
    code = main(["bench", "throughput", "byol", "--dataset", "synthetic", "--width", "4",
                 "--batch-size", "8", "--steps", "1", "--warmup", "1", "--rounds", "2",
                 "--workers", "0", "--gpus", "0", "--db", str(db)])
    assert code == 0
    out = capsys.readouterr().out
    assert "(c) data-path overhead" in out and "recorded as run 1" in out
    with Store.open(str(db)) as store:
        run = store.get_run(1)
    assert (run.kind, run.status, run.method, run.dataset) == ("bench", "COMPLETED", "byol",
                                                               "synthetic")
    s = run.summary
    assert s["overhead"] == pytest.approx(1 - s["real_img_s"] / s["ceiling_img_s"])
    assert s["flops_per_img"] > 0 and s["peak_rss_mb"] > 0
    assert s["real_tflops"] == pytest.approx(s["flops_per_img"] * s["real_img_s"] / 1e12)
    assert sorted((m.key, m.step) for m in run.metrics) == [
        ("ceiling_img_s", 0), ("ceiling_img_s", 1), ("real_img_s", 0), ("real_img_s", 1)]
    assert run.config["bench"] == "throughput" and run.config["run"]["method"]["name"] == "byol"


def test_too_many_steps_is_bad_input_and_records_nothing(
        db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", "throughput", "--dataset", "synthetic", "--batch-size", "64",
                 "--steps", "1000", "--gpus", "0", "--db", str(db)])
    assert code == 2
    assert "1002 steps of batch 64 need 64128 images" in capsys.readouterr().err
    if db.exists():
        with sqlite3.connect(db) as con:
            assert con.execute("select count(*) from runs").fetchone()[0] == 0


def test_time_to_accuracy_on_the_validation_split_never_reads_the_test_split(
        db: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """With eval.split=val every probe (the baselines and each budget's) fits on the train split
    less the validation images and scores on those, as a run's evaluations do; --budgets 0
    probes the baselines only."""
    import sslbench.bench.time_to_accuracy as tta
    from sslbench.data.splits import run_validation_split

    scored: list[torch.Tensor] = []
    real = tta.linear_probe

    def spy(train_x, train_y, test_x, test_y, *args, **kwargs):  # type: ignore[no-untyped-def]
        scored.append(test_y)
        return real(train_x, train_y, test_x, test_y, *args, **kwargs)

    monkeypatch.setattr(tta, "linear_probe", spy)
    common = ["bench", "time-to-accuracy", "--dataset", "synthetic", "--gpus", "0",
              "--set", "model.width=4", "--set", "eval.linear.epochs=1", "--set",
              "train.plan_steps=3", "--set", "eval.split=val", "--db", str(db)]
    assert main([*common, "--budgets", "1s"]) == 0
    assert "scored on the val split" in capsys.readouterr().out
    dataset = load_dataset("synthetic")
    cfg = resolve_config("simclr", flags={"data.dataset": "synthetic"})
    val = run_validation_split(dataset, cfg.data).val
    assert len(scored) == 3  # random init, raw pixels, the 1-second budget
    for labels in scored:  # the validation images' labels, never the test split's
        assert torch.equal(labels.cpu(), dataset.train_labels[val].cpu())

    assert main([*common, "--budgets", "0"]) == 0  # the baselines only: no training
    with Store.open(str(db)) as store:
        curve, only = store.get_run(1), store.get_run(2)
    assert curve.config["split"] == only.config["split"] == "val"
    assert only.status == "COMPLETED" and "final_top1" not in only.summary
    assert only.summary["random_init_top1"] == curve.summary["random_init_top1"]
    assert not [m for m in only.metrics if m.key == "linear_top1"]

    assert main([*common, "--budgets", "0", "--no-baselines"]) == 2  # measures nothing
    assert "measures nothing" in capsys.readouterr().err
    with Store.open(str(db)) as store:
        assert len(store.list_runs()) == 2


@pytest.mark.multiprocess
def test_time_to_accuracy_and_startup_are_recorded(db: Path) -> None:
    assert main(["bench", "time-to-accuracy", "--dataset", "synthetic", "--budgets", "2s,1s",
                 "--set", "model.width=4", "--set", "eval.linear.epochs=1", "--gpus", "0",
                 "--set", "train.plan_steps=3", "--db", str(db)]) == 0
    assert main(["bench", "startup", "--repeats", "1", "--db", str(db)]) == 0
    with Store.open(str(db)) as store:
        tta, startup = store.get_run(1), store.get_run(2)
    assert tta.kind == startup.kind == "bench" and tta.status == "COMPLETED"
    linux = Path("/proc/stat").exists()  # and the other processes' load beside each budget
    assert {m.key for m in tta.metrics} == {"linear_top1", "train_s", "budget_s",
                                            *(["others_cpu"] if linux else [])}
    assert all(m.value >= 0 for m in tta.metrics if m.key == "others_cpu")
    assert 0 < tta.summary["random_init_top1"] <= 1 and 0 < tta.summary["raw_pixels_top1"] <= 1
    assert [m.value for m in tta.metrics if m.key == "budget_s"] == [1.0, 2.0]
    assert 0 <= tta.summary["final_top1"] <= 1 and tta.summary["final_budget_s"] == 2.0
    assert startup.summary["help_s"] > 0 and len(startup.metrics) == 1


def test_throughput_of_the_streamed_path_beside_the_in_memory_one(
        db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sslbench.data.prepare import PrepareOptions, prepare

    prepare("synthetic", tmp_path / "shards", PrepareOptions(shard_size=64, workers=0),
            echo=lambda line: None)
    code = main(["bench", "throughput", "byol", "--dataset", "synthetic", "--width", "4",
                 "--batch-size", "16", "--steps", "2", "--warmup", "1", "--rounds", "1",
                 "--workers", "0", "--gpus", "0", "--db", str(db),
                 "--set", f"data.prepared={tmp_path / 'shards'}", "--set", "data.workers=0"])
    assert code == 0
    assert "(f) streamed from the shards" in capsys.readouterr().out
    with Store.open(str(db)) as store:
        s = store.get_run(1).summary
    assert s["stream_overhead"] == pytest.approx(1 - s["stream_img_s"] / s["ceiling_img_s"])
    assert s["stream_over_real"] == pytest.approx(s["stream_img_s"] / s["real_img_s"])
    if Path("/proc/self/clear_refs").exists():
        assert s["stream_peak_rss_mb"] > 0 and s["real_peak_rss_mb"] > 0
