"""Download benchmark data into the layout mtlrun reads (needs internet; not run by the tests).

    python scripts/download_data.py multidomain16 --to data/fdu_mtl_16domain

multidomain16: the FDU-MTL 16-domain sentiment corpus (Liu, Qiu & Huang 2017), from
github.com/FrankWork/fudan_mtl_reviews (data/fudan-mtl-dataset.tar.gz), unpacked to
<domain>.task.{train,test,unlabel} files.
"""

from __future__ import annotations

import argparse
import io
import tarfile
import urllib.request
from pathlib import Path

SOURCES = {
    "multidomain16": "https://github.com/FrankWork/fudan_mtl_reviews/raw/master/data/"
    "fudan-mtl-dataset.tar.gz",
}


def download_multidomain16(target: Path) -> None:
    with urllib.request.urlopen(SOURCES["multidomain16"], timeout=60) as response:
        archive = tarfile.open(fileobj=io.BytesIO(response.read()), mode="r:gz")
    target.mkdir(parents=True, exist_ok=True)
    count = 0
    for member in archive.getmembers():
        name = Path(member.name).name
        if member.isfile() and ".task." in name:
            data = archive.extractfile(member)
            if data is not None:
                (target / name).write_bytes(data.read())
                count += 1
    print(f"wrote {count} files to {target}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=sorted(SOURCES))
    parser.add_argument("--to", type=Path, required=True, help="target directory")
    args = parser.parse_args()
    download_multidomain16(args.to)


if __name__ == "__main__":
    main()
