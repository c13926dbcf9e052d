"""``facetransfer pairs make``: a pairs file in LFW's format for any folder of people, to verify with.

    facetransfer pairs make --root data/lfw --out runs/pairs/pairs.txt         # 10 folds of 300 + 300, as View 2
    facetransfer pairs make --root faces --out faces/pairs.txt --same 100 --different 100 --folds 1
    facetransfer pairs make --root data/orl --out runs/orl/pairs.txt --same 200 --different 200 \\
        --identities runs/fit/version_0/split.json                              # the split's held-out people
    facetransfer verify --pairs runs/orl/pairs.txt --root data/orl --backbone dlib_resnet --weights FACE_API
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from jsonargparse.typing import NonNegativeInt, PositiveInt

from .options import ToolParser

MAKE_DESCRIPTION = (
    "Draw same-person and different-person pairs of the images under --root (LFW's folder, or any "
    "<root>/<person>/<image>), as many of each in every fold, no pair twice, and write them in LFW's format: "
    "header N for one fold (as pairsDevTrain.txt), 'FOLDS N' for more (as pairs.txt, whose folds share no "
    "person). Image i of a person is LFW's <name>_NNNN.jpg number, else the i-th image of the person's "
    "folder in natural order. The same options and seed write the same file."
)


def build_parser() -> ToolParser:
    parser = ToolParser("pairs", "Pairs files in LFW's format for verification.", epilog=__doc__.split("\n", 2)[2])
    make = parser.subcommand("make", "draw balanced, seeded pairs of a folder of people", MAKE_DESCRIPTION)
    make.add_argument("--root", type=str, required=True, help="LFW folder, or a folder of person folders")
    make.add_argument("--out", type=str, required=True, help="the pairs file to write (its folder is created)")
    make.add_argument("--same", type=PositiveInt, default=3000, help="same-person pairs, over all folds")
    make.add_argument("--different", type=Optional[PositiveInt], default=None,
                      help="different-person pairs, over all folds: as many as --same (LFW's format needs that)")
    make.add_argument("--folds", type=PositiveInt, default=10, help="person-disjoint folds; 1: a View 1 file")
    make.add_argument("--seed", type=NonNegativeInt, default=0, help="seed of the draw")
    make.add_argument("--identities", type=Optional[str], default=None,
                      help="only these people: a text file of names (one a line, # comments), or a split.json / "
                           "checkpoint whose held-out (test) people are used")
    return parser


def read_identities(path: str) -> list[str]:
    """The people named by ``path``: a split manifest's test people, or a text file's names."""
    from ..data.split import SplitManifest
    from ..errors import DataError

    if Path(path).suffix in (".json", ".ckpt"):
        return SplitManifest.load(path).identities("test")
    if not Path(path).is_file():
        raise DataError(f"--identities {path} does not exist")
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"--identities {path}: cannot read it ({err})") from None
    return [name for line in lines if (name := line.split("#", 1)[0].strip())]


def pairs_command(argv: Sequence[str]) -> int:
    """Entry of ``facetransfer pairs``; bad input raises a :class:`FaceTransferError` (one line, exit 2)."""
    args = build_parser().parse(argv).make
    from dataclasses import replace

    from ..data.pairs import image_folder, make_pairs, numbered_images, write_pairs
    from ..errors import DataError
    from ..io.images import identity_images

    image_dir = image_folder(args.root)
    people = identity_images(image_dir)
    if args.identities:
        wanted = read_identities(args.identities)
        unknown = [name for name in wanted if name not in people]
        if unknown:
            raise DataError(f"{len(unknown)} people of --identities {args.identities} have no images under "
                            f"{image_dir}: {', '.join(unknown[:10])}{' ...' if len(unknown) > 10 else ''}")
        people = {name: people[name] for name in wanted}
    numbers = {name: list(numbered_images(name, images)) for name, images in people.items()}
    different = args.same if args.different is None else args.different
    pairs = make_pairs({name: len(n) for name, n in numbers.items()}, args.same, different, args.folds, args.seed)
    pairs = [replace(p, index1=numbers[p.name1][p.index1 - 1], index2=numbers[p.name2][p.index2 - 1]) for p in pairs]
    out = write_pairs(pairs, args.out, args.folds)
    images = {image for p in pairs for image in p.images}
    print(f"{len(pairs)} pairs ({args.same} same-person, {different} different-person) in {args.folds} "
          f"fold(s) of {len({name for name, _ in images})} people and {len(images)} images of {image_dir} "
          f"written to {out}")
    return 0


__all__ = ["build_parser", "pairs_command", "read_identities"]
