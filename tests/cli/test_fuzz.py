"""Hostile input for every command, generated (Hypothesis): strings with control characters,
markup, formulas and NULs, numbers past every range, YAML configs and search spaces of any
shape. The contract: exit 0 or exit 2 with one line on stderr (never a traceback), nothing in
any table or file changed, and no raw control character in what is printed.

The default suite tries a few derandomised examples per entry point; ``-m slow`` tries many
(the counts per entry point are written to $SSLBENCH_FUZZ_COUNTS when it is set).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sslbench.cli import main
from sslbench.store import Store

FEW, MANY = 6, 120
EXAMPLES = [pytest.param(FEW, id="few"), pytest.param(MANY, id="many", marks=pytest.mark.slow)]
TRIED: Counter[str] = Counter()

# -- what a hostile user types ----------------------------------------------------------------

SPECIAL = ["", " ", "-", "--", "[/]", "[link=http://evil.example]x[/link]", "[bold red]",
           '=HYPERLINK("http://evil.example")', "-2+3+cmd|' /C calc'!A0", "@SUM(A1)",
           r"$\macro{", "\x1b[2J\x1b]8;;http://evil.example\x1b\\", "a\nb", "a\rb", "\x00",
           "../../etc/passwd", "/", ".", "~", "%s%n", "{0}", "'; DROP TABLE runs; --",
           "\u202e\u2028", "é" * 300, "NaN", "inf", "-inf", "1e999", "0x10", "١٢٣", "1_000",
           "9" * 30, "-" + "9" * 30, "4294967296", "-1", "0", "true", "null", "~/x",
           "postgresql://user:hunter2@127.0.0.1:1/db"]
text = st.one_of(st.sampled_from(SPECIAL),
                 st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40))
number = st.one_of(st.integers(-2**70, 2**70).map(str),
                   st.floats(allow_nan=True, allow_infinity=True).map(repr),
                   st.sampled_from(["1e999", "-0", "0.0", "1_0", "٣", "+5", " 7 ", "2**8"]))
value = st.one_of(text, number)
KEYS = ["optimizer.lr", "train.epochs", "train.batch_size", "train.seed", "model.width",
        "model.backbone", "data.dataset", "method.temperature", "eval.protocols",
        "eval.knn.k", "eval.linear.layer", "augment.crop_min_scale", "train.output_dir",
        "eval.diagnostics.kde_bandwidth", "method", "train", "nosuch.key"]
key = st.one_of(st.sampled_from(KEYS), text)
override = st.builds(lambda k, v: f"{k}={v}", key, value) | text
yaml_value = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), text),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(key, inner, max_size=3),
    max_leaves=8)
RAW_YAML = [b"\xff\xfe\x00bad", b"!!python/object/apply:os.system ['touch pwned']\n",
            b"a: &a [*a, *a]\n", b"[" * 200, b"key: [unclosed\n", b"- just\n- a list\n",
            b"{a: 1, a: 2}\n", b"%TAG ! tag:evil:\n--- !x {}\n", b""]
yaml_file = st.one_of(st.sampled_from(RAW_YAML),
                      yaml_value.map(lambda v: yaml.safe_dump(v).encode()),
                      st.dictionaries(key, yaml_value, max_size=6)
                      .map(lambda d: yaml.safe_dump(d).encode()))
PARAM = st.fixed_dictionaries({}, optional={
    "type": st.sampled_from(["float", "int", "categorical", "bogus"]) | text,
    "low": yaml_value, "high": yaml_value, "log": yaml_value, "step": yaml_value,
    "choices": yaml_value, "when": yaml_value, "extra": yaml_value})
space_file = st.one_of(
    st.sampled_from(RAW_YAML),
    st.fixed_dictionaries({}, optional={
        "method": st.sampled_from(["simclr", "byol"]) | text,
        "objective": st.sampled_from(["knn", "linear"]) | text,
        "trials": yaml_value, "seed": yaml_value, "baseline": yaml_value,
        "fixed": st.dictionaries(key, yaml_value, max_size=3),
        "pruner": yaml_value | st.sampled_from(["median", "hyperband", "none"]),
        "params": st.dictionaries(key, PARAM | yaml_value, max_size=3),
        "bogus": yaml_value,
    }).map(lambda d: yaml.safe_dump(d).encode()))

# -- the database and files the commands are pointed at ---------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with r.sqlite (1: a COMPLETED pretrain run whose checkpoint file is gone, 2: its
    linear child, 3: a KILLED run without a checkpoint, 4: a FAILED sweep trial of study s, 5:
    a run whose stored values are hostile), j.log (study s with one trial) and a sub-folder."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from sslbench.resolve import resolve_config

    folder = tmp_path_factory.mktemp("fuzz")
    cfg = resolve_config("simclr", flags={"data.dataset": "synthetic", "model.width": 8,
                                          "train.batch_size": 256, "train.epochs": 1})
    with Store.open(str(folder / "r.sqlite")) as store:
        common = {"method": "simclr", "dataset": "synthetic", "config": cfg.to_dict(), "seed": 0}
        one = store.create_run(kind="pretrain", runs_root=folder / "runs", **common)
        store.record_artifact(one, "checkpoint", folder / "runs" / "gone.pt", "0" * 64, 1)
        store.finish_run(one, "COMPLETED")
        child = store.create_run(kind="linear", parent_id=one, **common)
        store.update_summary(child, linear_top1=0.5)
        store.finish_run(child, "COMPLETED")
        three = store.create_run(kind="pretrain", **common)
        store.finish_run(three, "KILLED", failure_reason="stopped")
        four = store.create_run(kind="trial", sweep_id="s", trial_number=0, **common)
        store.finish_run(four, "FAILED", failure_reason="nan")
        five = store.create_run(kind="pretrain", method=SPECIAL[5], dataset=SPECIAL[11],
                                config={"x": SPECIAL[6]}, seed=0, backbone=SPECIAL[12])
        store.log_metrics(five, {SPECIAL[10]: 1.0}, epoch=1)
        store.finish_run(five, "FAILED", failure_reason=SPECIAL[11])
    study = optuna.create_study(study_name="s", direction="maximize", storage=JournalStorage(
        JournalFileBackend(str(folder / "j.log"))))
    study.set_user_attr("method", "simclr")
    study.add_trial(optuna.trial.create_trial(params={}, distributions={}, value=0.5,
                                              user_attrs={"run_id": one}))
    (folder / "sub").mkdir()
    return folder


def _snapshot(folder: Path) -> dict[str, Any]:
    """Every row of every table of r.sqlite, and the bytes of every other file."""
    out: dict[str, Any] = {}
    for path in sorted(folder.rglob("*")):
        if path.name.startswith("r.sqlite"):
            continue
        out[str(path)] = path.read_bytes() if path.is_file() else "dir"
    with sqlite3.connect(f"file:{folder / 'r.sqlite'}?mode=ro", uri=True) as con:
        for (table,) in con.execute("select name from sqlite_master where type='table'"):
            out[table] = sorted(map(repr, con.execute(f"select * from {table}")))
    con.close()
    return out


@contextlib.contextmanager
def _in(folder: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def _contract(folder: Path, entry: str, argv: list[str], *, may_succeed: bool = True,
              files: dict[str, bytes] | None = None) -> None:
    """Run ``argv`` against ``folder`` and check the contract (see the module docstring)."""
    TRIED[entry] += 1
    for name, data in (files or {}).items():
        (folder / name).write_bytes(data)
    before = _snapshot(folder)
    out, err = io.StringIO(), io.StringIO()
    with _in(folder), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    stderr = err.getvalue()
    assert code in ((0, 2) if may_succeed else (2,)), (argv, code, stderr)
    if code == 2:
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (argv, stderr)
        assert "hunter2" not in lines[0]
    assert "Traceback" not in stderr + out.getvalue()
    assert "\x1b" not in out.getvalue() + stderr, argv  # shown as \x1b, never sent raw
    assert _snapshot(folder) == before, argv


def _fuzz(examples: int, strategy: st.SearchStrategy[Any],
          check: Callable[[Any], None]) -> None:
    @settings(max_examples=examples, derandomize=True, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                     HealthCheck.filter_too_much])
    @given(strategy)
    def run(drawn: Any) -> None:
        check(drawn)

    run()


@pytest.fixture(scope="module", autouse=True)
def _report_counts() -> Iterator[None]:
    yield
    if target := os.environ.get("SSLBENCH_FUZZ_COUNTS"):
        Path(target).write_text(json.dumps(dict(sorted(TRIED.items())), indent=2) + "\n")


# -- one property per entry point ---------------------------------------------------------------


@pytest.mark.parametrize("examples", EXAMPLES)
def test_pretrain_dry_run(world: Path, examples: int) -> None:
    args = st.tuples(st.sampled_from(["simclr", "byol", "dino"]) | text,
                     st.lists(override, max_size=4),
                     st.lists(st.tuples(st.sampled_from(
                         ["--epochs", "--batch-size", "--seed", "--gpus", "--procs", "--dataset",
                          "--eval", "--data-dir", "--nnodes", "--node-rank", "--master-port"]),
                         value), max_size=3),
                     st.none() | yaml_file)

    def check(drawn: tuple[str, list[str], list[tuple[str, str]], bytes | None]) -> None:
        method, overrides, flags, config = drawn
        argv = ["pretrain", method, *overrides, *[x for f in flags for x in f], "--dry-run",
                "--db", "r.sqlite"]
        files = {}
        if config is not None:
            argv += ["--config", "c.yaml"]
            files["c.yaml"] = config
        _contract(world, "pretrain", argv, files=files)

    _fuzz(examples, args, check)


@pytest.mark.parametrize("examples", EXAMPLES)
def test_recording_commands_refuse_a_folder_as_db(world: Path, examples: int) -> None:
    """pretrain / supervised / reproduce with hostile values and --db a folder: whatever else is
    right, nothing may be recorded, so every case is exit 2 without a file written."""
    args = st.tuples(st.sampled_from(["pretrain simclr", "supervised --labels 1%",
                                      "reproduce infonce-ceiling"]),
                     st.lists(override, max_size=3), text)

    def check(drawn: tuple[str, list[str], str]) -> None:
        command, extra, name = drawn
        argv = [*command.split(), "--dataset", "synthetic", *extra, "--db", "sub"]
        if command.startswith("reproduce"):
            argv = ["reproduce", name if name else "infonce-ceiling", "--db", "sub",
                    "--out", "sub"]
        _contract(world, command.split()[0], argv, may_succeed=False)

    _fuzz(examples, args, check)


RUN_IDS = st.sampled_from(["2", "3", "4", "5", "0", "-1"]) | number | text


@pytest.mark.parametrize("examples", EXAMPLES)
@pytest.mark.parametrize("command", ["linear-eval", "knn", "semi-supervised", "resume"])
def test_evaluations_and_resume(world: Path, examples: int, command: str) -> None:
    """Run 1's checkpoint is gone and every other id is wrong: each case is refused, after its
    options are validated."""
    options = {"linear-eval": ["--epochs", "--lr", "--layer", "--batch-size", "--weight-decay"],
               "knn": ["--k", "--temperature", "--layer"],
               "semi-supervised": ["--labels", "--steps", "--lr", "--split-seed"],
               "resume": ["--gpus", "--data-dir"]}[command]
    args = st.tuples(st.just("1") | RUN_IDS,
                     st.lists(st.tuples(st.sampled_from(options), value), max_size=3))

    def check(drawn: tuple[str, list[tuple[str, str]]]) -> None:
        run_id, flags = drawn
        argv = [command, run_id, *[x for f in flags for x in f], "--db", "r.sqlite"]
        if command == "semi-supervised" and "--labels" not in argv:
            argv += ["--labels", "1%"]
        _contract(world, command, argv, may_succeed=False)

    _fuzz(examples, args, check)


@pytest.mark.parametrize("examples", EXAMPLES)
def test_runs_commands(world: Path, examples: int) -> None:
    args = st.one_of(
        st.lists(st.tuples(st.sampled_from(["--kind", "--method", "--dataset", "--status",
                                            "--limit"]), value), max_size=3)
        .map(lambda fs: ["runs", "list", *[x for f in fs for x in f]]),
        st.tuples(RUN_IDS | st.just("1"), st.booleans())
        .map(lambda t: ["runs", "show", t[0], *(["--json"] if t[1] else [])]),
        st.tuples(RUN_IDS | st.just("1"), RUN_IDS | st.just("5"))
        .map(lambda t: ["runs", "compare", t[0], t[1]]))

    def check(argv: list[str]) -> None:
        _contract(world, " ".join(argv[:2]), [*argv, "--db", "r.sqlite"])

    _fuzz(examples, args, check)


@pytest.mark.parametrize("examples", EXAMPLES)
def test_report(world: Path, examples: int) -> None:
    flags = ["--dataset", "--method", "--backbone", "--sweep", "--status", "--since", "--until",
             "--protocol", "--group-by", "--sort", "--format"]
    args = st.lists(st.tuples(st.sampled_from(flags), value | st.sampled_from(
        ["any", "markdown", "csv", "html", "json", "linear,knn", "x", "s"])), max_size=4)

    def check(drawn: list[tuple[str, str]]) -> None:
        _contract(world, "report", ["report", *[x for f in drawn for x in f], "--db", "r.sqlite"])

    _fuzz(examples, args, check)


@pytest.mark.parametrize("examples", EXAMPLES)
def test_sweep(world: Path, examples: int) -> None:
    """Any space file, --set, trials, workers and study name; --storage is a folder, so even a
    valid sweep is refused (after its space and values are checked) and nothing starts."""
    args = st.tuples(st.sampled_from(["simclr", "byol"]) | text, st.none() | space_file,
                     st.lists(override, max_size=3),
                     st.lists(st.tuples(st.sampled_from(["--trials", "--workers", "--study"]),
                                        value), max_size=2))

    def check(drawn: tuple[str, bytes | None, list[str], list[tuple[str, str]]]) -> None:
        method, space, fixed, flags = drawn
        argv = ["sweep", method, *[x for s in fixed for x in ("--set", s)],
                *[x for f in flags for x in f], "--storage", "sub", "--db", "r.sqlite"]
        files = {}
        if space is not None:
            argv += ["--space", "space.yaml"]
            files["space.yaml"] = space
        _contract(world, "sweep", argv, may_succeed=False, files=files)

    _fuzz(examples, args, check)


@pytest.mark.parametrize("examples", EXAMPLES)
def test_sweep_status_and_best(world: Path, examples: int) -> None:
    args = st.tuples(st.sampled_from(["status", "best"]), st.just("s") | text,
                     st.sampled_from(["j.log", "sub", "r.sqlite", "missing.log"]) | text)

    def check(drawn: tuple[str, str, str]) -> None:
        action, study, storage = drawn
        _contract(world, f"sweep {action}",
                  ["sweep", action, study, "--storage", storage, "--db", "r.sqlite"])

    _fuzz(examples, args, check)


@pytest.mark.parametrize("examples", EXAMPLES)
def test_db_option_of_every_reading_command(world: Path, examples: int) -> None:
    """--db itself hostile: a path of any text, a folder, a file that is not a database."""
    args = st.tuples(st.sampled_from([["runs", "list"], ["report"], ["db", "upgrade"],
                                      ["runs", "show", "1"]]),
                     st.sampled_from(["sub", "j.log", "missing.sqlite", "sub/x.sqlite",
                                      "nosuch/x.sqlite", "sqlite:///sub", "nosuchdriver://x"])
                     | text.filter(lambda s: "://" not in s))

    def check(drawn: tuple[list[str], str]) -> None:
        argv, db = drawn
        _contract(world, f"--db of {' '.join(argv)}", [*argv, "--db", db])

    _fuzz(examples, args, check)


@pytest.mark.parametrize("examples", EXAMPLES)
def test_info_and_bench_commands(world: Path, examples: int) -> None:
    args = st.one_of(
        st.tuples(st.just(["datasets", "--data-dir"]), text).map(lambda t: [*t[0], t[1]]),
        st.tuples(st.just(["bench", "throughput"]), text.filter(lambda s: s not in (
            "simclr", "byol")), st.lists(override, max_size=2))
        .map(lambda t: [*t[0], t[1], *[x for s in t[2] for x in ("--set", s)], "--no-record"]),
        st.tuples(st.just(["bench", "report", "--runs"]), number)
        .map(lambda t: [*t[0], t[1], "--repeats", "0"]))

    def check(argv: list[str]) -> None:
        _contract(world, " ".join(argv[:2]), argv)

    _fuzz(examples, args, check)
