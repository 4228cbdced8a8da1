"""`sslbench data ...`: decode a dataset once into shards, and check prepared shards."""

from __future__ import annotations

from typing import Annotated

import typer

from sslbench.cli import app

data_app = typer.Typer(help="Prepared datasets: decoded once into WebDataset shards, then read "
                            "into memory or streamed (data.prepared, data.storage).",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("prepare")
def data_prepare(
    source: Annotated[str, typer.Argument(
        help="A registered dataset (see `sslbench datasets`) or a folder holding train/<class>/ "
             "and val/<class>/ image folders.")],
    out: Annotated[str, typer.Option("--out", metavar="DIR", help="New folder for the shards.")],
    size: Annotated[int | None, typer.Option(
        min=8, help="Side of the stored square images [the dataset's; 96 for an image "
                    "folder]; recipes store 256 and train on 224 px crops.")] = None,
    encoding: Annotated[str, typer.Option(
        help="jpeg, raw (uint8), or auto: raw up to 64 px.")] = "auto",
    quality: Annotated[int, typer.Option(min=1, max=100, help="JPEG quality.")] = 90,
    shard_size: Annotated[int, typer.Option(min=1, help="Images per shard.")] = 1000,
    class_list: Annotated[str | None, typer.Option(
        metavar="FILE", help="Image folders: the classes to keep, one folder name per line "
                             "(e.g. recipes/imagenet100/classes.txt).")] = None,
    workers: Annotated[int | None, typer.Option(
        min=0, help="Encoding processes [the CPU count; 0: this process].")] = None,
    seed: Annotated[int, typer.Option(min=0, help="Seed of the stored order.")] = 0,
    data_dir: Annotated[str | None, typer.Option(
        help="Root holding one folder per dataset [env SSLBENCH_DATA].")] = None,
) -> None:
    """Decode SOURCE once, resized to --size, into WebDataset shards with a manifest in DIR;
    train from them with `--set data.prepared=DIR` (in memory or streamed: data.storage)."""
    from sslbench.data.prepare import PrepareOptions, prepare
    from sslbench.errors import UserError

    if encoding not in ("auto", "jpeg", "raw"):
        raise UserError(f"--encoding {encoding!r}: choose auto, jpeg or raw")
    options = PrepareOptions(size=size, encoding=encoding, quality=quality,
                             shard_size=shard_size, seed=seed, data_dir=data_dir,
                             class_list=class_list,
                             **({} if workers is None else {"workers": workers}))
    manifest = prepare(source, out, options, echo=typer.echo)
    decoded = manifest.decoded_bytes() / 2**30
    typer.echo(f"prepared {manifest.dataset} ({len(manifest.classes)} classes, "
               f"{manifest.size} px, {manifest.encoding}) in {out}: {decoded:.2f} GiB decoded")


@data_app.command("verify")
def data_verify(
    folder: Annotated[str, typer.Argument(metavar="DIR", help="A prepared folder.")],
) -> None:
    """Check a prepared folder against its manifest: every shard there, whole, and unchanged
    (sha256)."""
    from pathlib import Path

    from sslbench.data.shards import check_files, read_manifest

    manifest = read_manifest(folder)
    check_files(Path(folder).expanduser(), manifest, full=True)
    shards = sum(len(s.shards) for s in manifest.splits.values())
    typer.echo(f"{folder}: {shards} shards match the manifest "
               f"({', '.join(f'{k} {v.count}' for k, v in manifest.splits.items())})")
