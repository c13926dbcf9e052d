"""Enroll people from a folder, identify new photos, reject strangers (open-set identification).

With ``../shared/data/orl`` present it uses ORL (40 subjects x 10 images): the last
``--unknown`` subjects are never enrolled, the others enroll their first ``--enroll``
images and the rest are probes. Without it, or with ``--synthetic``, it renders a small
synthetic folder first. Then it saves the gallery, reloads it and names one probe::

    python examples/gallery.py                                      # dlib_resnet (face-pretrained)
    python examples/gallery.py --backbone mobilenet_v2 --weights IMAGENET1K_V1
    python examples/gallery.py --root faces/ --enroll 3 --unknown 2  # your own <root>/<person>/<image>
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import facetransfer as ft
from facetransfer.data.synthetic import render_face
from facetransfer.verification import list_identity_images

ORL = Path(__file__).resolve().parents[2] / "shared" / "data" / "orl"


def synthetic_folder(root: Path, identities: int = 10, per_identity: int = 8) -> Path:
    """``root/person_k/i.png``, rendered by facetransfer's synthetic face generator."""
    for k in range(identities):
        (root / f"person_{k:02d}").mkdir(parents=True, exist_ok=True)
        for i in range(per_identity):
            render_face(7, k, i, image_size=96).save(root / f"person_{k:02d}" / f"{i}.png")
    return root


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=None, help="<root>/<person>/<image> (default: ORL, else synthetic)")
    parser.add_argument("--synthetic", action="store_true", help="use a rendered synthetic folder")
    parser.add_argument("--backbone", default="dlib_resnet")
    parser.add_argument("--weights", default="FACE_API", help="pretrained weights name, or 'none'")
    parser.add_argument("--input-size", type=int, default=None, help="input side in pixels (default: backbone's)")
    parser.add_argument("--face-crop", type=float, default=1.0, help="central fraction of each image kept")
    parser.add_argument("--match", default="nearest", choices=["mean", "nearest"],
                        help="compare probes with each person's mean embedding or most similar image")
    parser.add_argument("--enroll", type=int, default=5, help="images enrolled per known person")
    parser.add_argument("--unknown", type=int, default=5, help="people held back as strangers")
    parser.add_argument("--out", default="runs/example_gallery")
    args = parser.parse_args(argv)

    ft.tune_malloc()  # faster CPU runs: freed activation memory is reused (Linux/glibc)
    if args.synthetic or (args.root is None and not ORL.is_dir()):
        root = synthetic_folder(Path(tempfile.mkdtemp(prefix="facetransfer-gallery-")))
    else:
        root = Path(args.root) if args.root else ORL
    people = list_identity_images(root)
    names = list(people)
    known, strangers = names[: len(names) - args.unknown], names[len(names) - args.unknown :]
    print(f"{root}: {len(names)} people; enrolling {args.enroll} images of {len(known)}, {len(strangers)} strangers")

    model = ft.FaceClassifier(
        args.backbone, weights=None if args.weights.lower() == "none" else args.weights, input_size=args.input_size
    )
    gallery = ft.Gallery(model, face_crop=args.face_crop, match=args.match)
    gallery.enroll_folder(root, images_per_identity=args.enroll, identities=known)
    threshold = gallery.calibrate()  # from the enrolled images alone (leave-one-out)

    probes = [(name, path) for name in known for path in people[name][args.enroll :]]
    matches = gallery.identify_many([path for _, path in probes])
    top1 = sum(m.nearest == name for m, (name, _) in zip(matches, probes)) / max(1, len(probes))
    correct = sum(m.name == name for m, (name, _) in zip(matches, probes)) / max(1, len(probes))
    stranger_matches = gallery.identify_many([p for name in strangers for p in people[name]]) if strangers else []
    rejected = sum(m.name is None for m in stranger_matches) / max(1, len(stranger_matches))
    print(f"threshold {threshold:.3f} (cosine similarity)")
    print(f"closed-set top-1 {top1:.3f}; accepted and correct {correct:.3f} of {len(probes)} probes")
    print(f"strangers rejected {rejected:.3f} of {len(stranger_matches)} images")

    out = Path(args.out)
    saved = gallery.save(out / "faces.gallery")
    reloaded = ft.Gallery.load(saved, model)
    name, path = probes[0]
    match = reloaded.identify(path)
    print(f"saved {saved}; reloaded: {Path(path).name} of {name} -> {match.name or 'unknown'} ({match.score:.3f})")
    return {"closed_set_top1": top1, "accepted_correct": correct, "unknown_rejected": rejected, "threshold": threshold}


if __name__ == "__main__":
    main()
