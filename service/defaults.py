"""Which model answers a request that names none: one per task (the manifest's `task`).

Once a second classifier is exported beside the first, a `/classify` without `model` has no
obvious answer, and a client written against one model should not start failing because
another was added. In order of precedence:

1. `BERTSERVE_DEFAULT_MODELS` (`classify=minilm-sentiment,embed=all-minilm-l6-v2`): the
   deployment decides, without editing a model directory, so the same export can be the
   default in one deployment and not in another;
2. a manifest's `"default": true`: the model directory says so itself, and carries it when
   copied to another repository;
3. the only model of its task.

A task served by several models and none of these has no default: such a request is refused,
naming the models and the setting. The choice is made from the manifests alone, before any
model loads, so a bad one stops a start-up at once and refuses a reload as a whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from service.kinds import MODEL_KINDS, ModelKind
from service.manifest import MANIFEST_FILE, Manifest

SETTING = "BERTSERVE_DEFAULT_MODELS"


class DefaultsError(ValueError):
    """The setting names a model that is not served as its task, or two manifests claim the
    same task: one line saying which and how to settle it."""


def choose_defaults(setting: Mapping[ModelKind, str], manifests: Iterable[Manifest]) -> dict[ModelKind, str]:
    """The default model's name for every task that has one."""
    manifests = list(manifests)
    by_name = {m.name: m for m in manifests}
    chosen: dict[ModelKind, str] = {}
    for kind, name in setting.items():
        named = by_name.get(name)
        if named is None or named.task != kind:
            served = ", ".join(sorted(m.name for m in manifests if m.task == kind)) or "none"
            article = "an" if named is not None and named.task[0] in "aeiou" else "a"
            what = "is not served" if named is None else f"is {article} {named.task} model"
            raise DefaultsError(f"{SETTING} names {kind}={name}, but {name!r} {what} ({kind} models: {served})")
        chosen[kind] = name
    for kind in MODEL_KINDS:
        of_kind = [m for m in manifests if m.task == kind]
        claims = sorted(m.name for m in of_kind if m.default)
        if kind in chosen:
            continue
        if len(claims) > 1:
            raise DefaultsError(
                f'{", ".join(claims)} each say they are the default {kind} model ("default": true in their '
                f"{MANIFEST_FILE}): clear it in all but one, or set {SETTING}={kind}=<name>"
            )
        if claims:
            chosen[kind] = claims[0]
        elif len(of_kind) == 1:
            chosen[kind] = of_kind[0].name
    return chosen
