"""Downloads pytorch-fid's FID Inception weights into the cache dir and checks their sha256 prefix.

    python -m study.metrics.fetch_inception [--dest DIR]   (needs internet)
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys
import urllib.request

from study.metrics import inception
from study.metrics.evaluator import default_cache_dir


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", default=None, help="directory (default $GAN_STUDY_CACHE or ~/.cache/gan_study)")
    args = parser.parse_args(argv)
    dest = pathlib.Path(args.dest) if args.dest else default_cache_dir()
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / inception.WEIGHTS_FILE
    tmp = target.with_name(target.name + f".part{os.getpid()}")
    try:
        urllib.request.urlretrieve(inception.WEIGHTS_URL, tmp)
    except OSError as error:
        print(f"error: could not download {inception.WEIGHTS_URL}: {error}", file=sys.stderr)
        return 1
    digest = inception.file_sha256(tmp)
    if not digest.startswith(inception.WEIGHTS_SHA256_PREFIX):
        tmp.unlink()
        print(f"error: sha256 {digest} does not start with {inception.WEIGHTS_SHA256_PREFIX}; file discarded", file=sys.stderr)
        return 1
    os.replace(tmp, target)
    print(f"{target} (sha256 {digest})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
