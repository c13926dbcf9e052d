"""Options that contradict the checkpoint a command runs from are an error, not silently replaced.

``facetransfer test --ckpt_path CK`` rebuilds the model from the checkpoint and tests it on the checkpoint's
split. An option the command line, a config file or the environment gives (not a default, even one equal to
the value) that differs from the checkpoint is reported with both values::

    facetransfer: error: --model.backbone resnet18 contradicts the checkpoint ck.ckpt (backbone: scratch_cnn); ...
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

from ..errors import ConfigError, FaceTransferError

log = logging.getLogger(__name__)

_GIVEN = "\x00given?"
# the model options a checkpoint's model is built from, each with two different valid defaults
MODEL_OPTIONS: dict[str, tuple[Any, Any]] = {
    "backbone": (_GIVEN, _GIVEN + "2"),
    "weights": (None, _GIVEN),
    "weights_path": (None, _GIVEN),
    "backbone_args": (None, {_GIVEN: 0}),
    "input_size": (None, 112),
    "freeze": (_GIVEN, _GIVEN + "2"),
    "head_norm": (False, True),
}
# the data options that decide the identities and the test set of a split
SPLIT_OPTIONS: dict[str, tuple[Any, Any]] = {
    "min_images_per_identity": (1, 2),
    "max_identities": (None, 1),
    "val_fraction": (0.1, 0.2),
    "test_fraction": (0.1, 0.2),
    "seed": (0, 1),
    "balanced_eval": (False, True),
    "split_by": ("image", "identity"),
    "train_identities": ("all", 1),
    "exclude_identities_in": (None, _GIVEN),
    "train_min_images_per_identity": (None, 1),
    "split_manifest": (None, _GIVEN),
}


def given_options(parse: Callable[[], Any], parser: Any, alternatives: Mapping[str, tuple[Any, Any]]) -> set[str]:
    """The dotted keys of ``alternatives`` whose value was given rather than defaulted.

    ``parse()`` parses the command again with ``parser`` (the subcommand's) and returns its namespace.
    It is called twice, with each key's default set to one and then the other of its two alternatives:
    a given value comes out the same both times, a default does not. The defaults are restored.
    """
    saved = {key: parser.get_default(key) for key in alternatives}
    results = []
    try:
        for i in (0, 1):
            parser.set_defaults({key: pair[i] for key, pair in alternatives.items()})
            results.append(parse())
    except FaceTransferError as err:  # cannot tell: no option counts as given
        log.debug("could not tell which options were given: %s", err)
        return set()
    finally:
        parser.set_defaults(saved)
    return {key for key in alternatives if _same(results[0].get(key), results[1].get(key))}


def _plain(value: Any) -> Any:
    return value.as_dict() if hasattr(value, "as_dict") else value  # a jsonargparse Namespace as a dict


def _same(a: Any, b: Any) -> bool:
    return json.dumps(_plain(a), sort_keys=True, default=str) == json.dumps(_plain(b), sort_keys=True, default=str)


def _shown(value: Any) -> str:
    return "null" if value is None else str(_plain(value))


def checkpoint_conflicts(
    config: Any, given: set[str], checkpoint: Mapping[str, Any], split_from_checkpoint: bool
) -> list[str]:
    """``--key value (checkpoint: other)`` for each given option that contradicts ``checkpoint``.

    ``config``: the subcommand's parsed namespace; ``split_from_checkpoint``: the command tests on the
    checkpoint's stored split (test, validate, predict), so split options must agree with it too.
    """
    from ..data.split import SplitManifest
    from ..io.checkpoint import stored_manifest

    hparams = checkpoint.get("hyper_parameters") or {}
    found = []
    for key in MODEL_OPTIONS:
        dotted = f"model.{key}"
        if dotted in given and key in hparams and not _same(config.get(dotted), hparams[key]):
            found.append(f"--{dotted} {_shown(config.get(dotted))} (checkpoint: {_shown(hparams[key])})")
    if not split_from_checkpoint:
        return found
    manifest = stored_manifest(checkpoint) or {}
    settings = (manifest.get("settings") or {}) if "data.split_manifest" not in given else {}
    for key in SPLIT_OPTIONS:
        dotted = f"data.{key}"
        if dotted in given and key in settings and not _same(config.get(dotted), settings[key]):
            found.append(f"--{dotted} {_shown(config.get(dotted))} (checkpoint's split: {_shown(settings[key])})")
    names = (checkpoint.get("facetransfer") or {}).get("class_names") or hparams.get("class_names")
    other = config.get("data.split_manifest") if "data.split_manifest" in given else None
    if names and other and os.path.exists(other):
        count = SplitManifest.load(other).num_classes
        if count != len(names):
            found.append(f"--data.split_manifest {other} with {count} identities (checkpoint: {len(names)})")
    return found


def conflict_error(found: list[str], ckpt_path: str | os.PathLike) -> ConfigError:
    """The one-line error for :func:`checkpoint_conflicts`' findings."""
    verb = "contradicts" if len(found) == 1 else "contradict"
    return ConfigError(
        f"{', '.join(found)} {verb} the checkpoint {ckpt_path}, from which the model and its split are rebuilt; "
        "drop the option(s) or use another checkpoint"
    )


__all__ = ["MODEL_OPTIONS", "SPLIT_OPTIONS", "checkpoint_conflicts", "conflict_error", "given_options"]
