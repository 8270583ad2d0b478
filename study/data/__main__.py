"""Dataset command line: `python -m study.data {info,prepare,download} ...` (see --help)."""
from __future__ import annotations

import argparse
import hashlib
import pathlib
import sys
import urllib.request

from study import data
from study.data import celebahq, cifar10, lsun, storage, throughput
from study.storage.paths import check_output_dir, disk_full_message

PREPARERS = {"cifar10": cifar10.prepare, "celebahq128": celebahq.prepare, "lsun_bedroom": lsun.prepare}
PREPARE_HINTS = {"cifar10": cifar10.PREPARE_HINT, "celebahq128": celebahq.PREPARE_HINT,
                 "lsun_bedroom": lsun.PREPARE_HINT}

CELEBAHQ_STEPS = """CelebA-HQ has no stable public URL; build it by hand:
  1. Produce the 30,000 CelebA-HQ images (progressive_growing_of_gans dataset_tool.py create_celebahq,
     from CelebA + the published deltas), or obtain the 100 TFRecord shards
     image_celebahq-128-000NN-of-00100 that compare_gan read (tensor2tensor CelebA-HQ problem).
  2. Put the images (sorted by name: last 10% = test) or the shards in one folder.
  3. python -m study.data prepare celebahq128 --from FOLDER"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m study.data",
        description="The paper's datasets: list them, convert a download into the prepared "
        "memory-mapped format, or download CIFAR-10. Data directory: --to, else $GAN_STUDY_DATA, "
        "else ~/.cache/gan_study/data.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="list the datasets, their splits and whether they are prepared")
    info.add_argument("--data-dir", metavar="DIR", help="data directory to look in")
    prepare = sub.add_parser("prepare", help="validate a download and convert it once to uint8 .npy + manifest.json")
    prepare.add_argument("name", choices=sorted(PREPARERS))
    prepare.add_argument("--from", dest="source", required=True, metavar="PATH",
                         help="cifar-10-python.tar.gz or cifar-10-batches-py/; a CelebA-HQ shard or image folder; bedroom_train_lmdb/")
    prepare.add_argument("--to", dest="data_dir", metavar="DIR", help="data directory to write")
    prepare.add_argument("--unofficial", action="store_true",
                         help="accept files that differ from the official release (checksums, counts, split sizes); recorded in the manifest")
    download = sub.add_parser("download", help="download (cifar10) or print the manual steps (celebahq128, lsun_bedroom)")
    download.add_argument("name", choices=sorted(PREPARERS))
    download.add_argument("--to", dest="data_dir", metavar="DIR", help="data directory to write")
    bench = sub.add_parser("bench", help="images/s of the input pipeline alone on synthetic memmaps (32 and 128 px)")
    bench.add_argument("--batch-size", type=int, default=64)
    bench.add_argument("--count-per-step", type=int, default=1, help="batches per call (n_dis in training)")
    bench.add_argument("--seconds", type=float, default=5.0, help="timing per measurement")
    bench.add_argument("--dir", help="folder for the temporary synthetic splits (default: system temp)")
    return parser


def _info(data_dir) -> None:
    root = storage.data_root(data_dir)
    print(f"data directory: {root}")
    for name in data.names():
        meta = data.info(name)
        prepared = "embedded" if name == "digits" else "not prepared"
        if name != "digits" and (root / name / "manifest.json").is_file():
            try:
                _, manifest = storage.read_manifest(name, data_dir, PREPARE_HINTS[name])
                counts = ", ".join(f"{k} {v['count']:,}" for k, v in sorted(manifest["splits"].items()))
                prepared = f"prepared: {counts}{'' if manifest.get('official') else ', unofficial'}"
            except data.DataError as error:
                prepared = f"unreadable: {error}"
        shape = f"{meta.image_size}x{meta.image_size}x{meta.channels}"
        print(f"{name:13s} {shape:10s} train {meta.train_size:>9,}  "
              f"test {meta.test_size:>7,}  FID samples {meta.fid_samples:>6,}  [{prepared}]")


def _download(name: str, data_dir) -> None:
    if name == "lsun_bedroom":
        print(lsun.DOWNLOAD_STEPS)
        return
    if name == "celebahq128":
        print(CELEBAHQ_STEPS)
        return
    target = storage.data_root(data_dir) / "downloads" / "cifar-10-python.tar.gz"
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    print(f"downloading {cifar10.URL} -> {target}")
    digest = hashlib.md5()
    with urllib.request.urlopen(cifar10.URL) as response, open(partial, "wb") as out:
        while block := response.read(1 << 20):
            digest.update(block)
            out.write(block)
    if digest.hexdigest() != cifar10.TARBALL_MD5:
        raise data.DataError(f"{partial}: md5 {digest.hexdigest()}, expected {cifar10.TARBALL_MD5}; download again")
    partial.replace(target)
    cifar10.prepare(target, data_dir)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command in ("prepare", "download") and args.data_dir is not None:

            try:
                check_output_dir(args.data_dir, "--to")
            except ValueError as error:
                raise data.DataError(str(error)) from None
        if args.command == "info":
            _info(args.data_dir)
        elif args.command == "prepare":
            manifest = PREPARERS[args.name](pathlib.Path(args.source), args.data_dir, official=not args.unofficial)
            counts = ", ".join(f"{k} {v['count']}" for k, v in manifest["splits"].items())
            print(f"{args.name} prepared ({counts})")
        elif args.command == "download":
            _download(args.name, args.data_dir)
        elif args.command == "bench":

            throughput.run(batch_size=args.batch_size, count_per_step=args.count_per_step, seconds=args.seconds, directory=args.dir)
    except data.DataError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        message = None
        if args.command in ("prepare", "download"):

            message = disk_full_message(error, storage.data_root(args.data_dir))
        if message is None:
            raise
        print(f"error: {message}; free space there and run the command again", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
