"""Load and check model directories. Every failure is one line naming what is wrong."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from service.kinds import output_width
from service.manifest import FORMAT_VERSION, MANIFEST_FILE, Manifest, sha256_file
from service.runtime.cpus import available_cpus
from service.runtime.session import CUDA, InferenceError, OnnxSession, SessionError, resolve_providers
from service.runtime.shared_weights import SharedWeights, shared_initializers
from service.runtime.tokenizer import TextEncoder, TokenizerError
from service.runtime.variants import TIMED, VariantChoice, int8_instructions, probe_batches, serve_faster
from service.settings import Settings

log = logging.getLogger("bertserve")


class ModelLoadError(Exception):
    pass


FileStamp = tuple[int, int]  # size in bytes, modification time in ns


@dataclass
class LoadedModel:
    directory: Path
    manifest: Manifest
    encoder: TextEncoder
    sessions: list[OnnxSession]  # one per instance, the same graph; each has its own runtime thread
    variant: str
    # Size and modification time of each file the manifest lists, as they were when loaded: a
    # reload without verification sees a file changed in place by them (lifecycle.unchanged).
    stamps: dict[str, FileStamp] = field(default_factory=dict)
    # The same graph again, its threads spinning during a run (service/engine/model.py uses
    # it for a batch that leaves the queue empty); None when off, on CUDA or single-threaded.
    fast: OnnxSession | None = field(default=None)
    # Why this variant serves (and under `auto` on the CPU, the timings behind it).
    choice: VariantChoice | None = field(default=None)

    @property
    def session(self) -> OnnxSession:
        """The first instance's session: what the checks and the metadata look at."""
        return self.sessions[0]

    @property
    def every_session(self) -> list[OnnxSession]:
        return [*self.sessions, *([self.fast] if self.fast is not None else [])]

    def close(self) -> None:
        for session in self.every_session:
            session.close()

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def sha256(self) -> str:
        """The served graph's checksum, as the manifest lists it."""
        return graph_sha256(self.manifest, self.variant)

    @property
    def identity(self) -> str:
        return identity(self.manifest, self.choice.candidates if self.choice else (self.variant,))


@dataclass(frozen=True)
class Found:
    """A model directory as a rescan sees it: read, not loaded."""

    directory: Path
    name: str
    identity: str
    manifest: Manifest


def graph_sha256(manifest: Manifest, variant: str) -> str:
    return manifest.files.get(manifest.variants[variant].file, "")


def identity(manifest: Manifest, variants: Sequence[str]) -> str:
    """What the result cache keys on and a reload compares: another graph (its checksum) or
    another variant of the same name is another model. `variants` are the ones the setting
    allows (`_candidates`): when int8 and fp32 are both candidates, a rescan does not decide
    again which serves, so the model is the same while neither graph changes (and one loaded model
    serves one of them for its whole life)."""
    shas = "+".join(graph_sha256(manifest, v) for v in variants)
    return f"{manifest.name}/{'+'.join(variants)}/{shas}"


def discover(models_dir: Path, on_skip: Callable[[Path], None] = lambda _: None) -> list[Path]:
    """The model directories of a repository (or the directory itself if it is one). Hidden
    folders (a reload's staging and swaps) are passed over in silence; any other folder without
    a manifest (a backup, a copy in progress) is handed to `on_skip` and passed over, so that
    it stops neither a start-up nor a reload. A folder with a manifest is a model directory,
    and is checked as one."""
    if not models_dir.is_dir():
        raise ModelLoadError(f"model repository {models_dir} does not exist (run `make models`)")
    if (models_dir / MANIFEST_FILE).is_file():
        return [models_dir]
    folders = sorted(p for p in models_dir.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
    found = [p for p in folders if (p / MANIFEST_FILE).exists()]
    skipped = [p for p in folders if p not in found]
    if not found:
        without = f": {', '.join(p.name for p in skipped)} {'has' if len(skipped) == 1 else 'have'} no {MANIFEST_FILE}"
        raise ModelLoadError(f"no model directory in {models_dir}{without if skipped else ''} (run `make models`)")
    for folder in skipped:
        on_skip(folder)
    return found


def load_repository(settings: Settings) -> list[LoadedModel]:
    """Every model directory of the repository, loaded and checked."""
    models = [load_model_dir(d, settings) for d in discover(settings.models)]
    _refuse_duplicates([m.name for m in models])
    return models


def scan(settings: Settings, on_skip: Callable[[Path], None] = lambda _: None) -> list[Found]:
    """What the repository holds now, and the checks cheap enough to run before the port is
    bound: every manifest readable and valid, every file it lists present (with verification
    on), the variant asked for available, no name twice. The checksums are left to the load
    (load_model_dir), so that each file is read and hashed once. A folder without a manifest
    goes to `on_skip` (discover)."""
    on_cuda = resolve_providers_or_fail(settings.provider)[0] == CUDA
    found = []
    for directory in discover(settings.models, on_skip):
        manifest = _read_manifest(directory)
        if settings.verify_models:
            _check_present(directory, manifest)
        candidates = _candidates(manifest, settings.variant, on_cuda, directory)[0]
        found.append(Found(directory, manifest.name, identity(manifest, candidates), manifest))
    _refuse_duplicates([f.name for f in found])
    return found


def _refuse_duplicates(names: list[str]) -> None:
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ModelLoadError(f"model name(s) served twice: {', '.join(duplicates)}")


def resolve_providers_or_fail(setting: str) -> list[str]:
    try:
        return resolve_providers(setting)
    except SessionError as exc:
        raise ModelLoadError(str(exc)) from exc


def load_model_dir(directory: Path, settings: Settings) -> LoadedModel:
    """Read, verify (each file hashed once, with verification on) and open one model
    directory, and check that its graph, tokenizer and manifest fit together."""
    manifest = _read_manifest(directory)
    stamps = file_stamps(directory, manifest)  # before the files are read: a later change is seen
    if settings.verify_models:
        verify_files(directory, manifest)
    providers = resolve_providers_or_fail(settings.provider)
    on_cuda = providers[0] == CUDA
    candidates, reason = _candidates(manifest, settings.variant, on_cuda, directory)
    plan = thread_plan(settings, available_cpus(), on_cuda)
    sharing = settings.share_weights and not on_cuda and (plan.instances > 1 or plan.fast_lane)

    def open_session(variant: str, spinning: bool, threads: int, shared: SharedWeights) -> OnnxSession:
        return OnnxSession(
            directory / manifest.variants[variant].file,
            output=manifest.output,
            pad_token_id=manifest.pad_token_id,
            providers=providers,
            threads=threads,
            io_binding=settings.io_binding,
            spinning=spinning,
            nice=settings.runtime_nice,
            initializers=shared,
        )

    def open_first(variant: str) -> OnnxSession:
        """The first instance's session, checked against the manifest (closed if it fails)."""
        shared = _shared_weights(directory / manifest.variants[variant].file) if sharing else []
        session = open_session(variant, False, plan.threads, shared)
        try:
            _check_fit(directory, manifest, session)
        except BaseException:
            session.close()
            raise
        return session

    sessions: list[OnnxSession] = []
    try:
        if len(candidates) > 1:
            batches = probe_batches(manifest.max_length, manifest.pad_token_id + 1)
            first, choice = serve_faster(open_first, batches, int8_instructions())
            log.info("variant timed", extra={"model": manifest.name, "variant": choice.variant, **choice.as_dict()})
        else:
            first, choice = open_first(candidates[0]), VariantChoice(candidates[0], reason, candidates)
        sessions.append(first)
        encoder = TextEncoder(directory / "tokenizer.json", manifest.max_length)
        if settings.verify_models:
            _check_vocabulary(directory, encoder, first)
        # The model's other sessions share the first one's weights (when it has any to share).
        shared = first.shared_weights
        sessions += [open_session(choice.variant, False, plan.threads, shared) for _ in range(plan.instances - 1)]
        fast = open_session(choice.variant, True, plan.fast_threads, shared) if plan.fast_lane else None
    except BaseException as exc:
        for session in sessions:  # those opened before the failure, freed now, whatever it was
            session.close()
        if isinstance(exc, SessionError | TokenizerError):
            raise ModelLoadError(f"{directory}: {exc}") from exc
        raise
    return LoadedModel(directory, manifest, encoder, sessions, choice.variant, stamps=stamps, fast=fast, choice=choice)


def _shared_weights(graph: Path) -> SharedWeights:
    try:
        return shared_initializers(graph)
    except Exception:  # onnx and protobuf raise their own types for a graph they cannot parse
        return []  # opening the session then says what is wrong with it, in onnxruntime's words


@dataclass(frozen=True)
class ThreadPlan:
    instances: int  # sessions per model
    threads: int  # intra-op threads per session
    fast_lane: bool  # a spinning session beside them for the batches that leave the queue empty
    # The fast lane runs only while no other batch of its model does, so it may use every CPU.
    fast_threads: int = 0


# On the CPU, one session per CPU up to this many; past it the CPUs are split between them.
# Sessions of few threads beat one session of many on the same CPUs, at saturation and under
# a retry storm. Each session has its own working buffers (the weights are shared:
# service/runtime/shared_weights.py), and past 4 per model the memory grows for little or no
# more throughput, so the cap keeps it at 4 (the figures on 2 and on 16 cores:
# docs/design.md, "Sessions").
MAX_DEFAULT_INSTANCES = 4


def thread_plan(settings: Settings, cpus: int, on_cuda: bool) -> ThreadPlan:
    """How many sessions each model gets and how many threads each: on CUDA one session
    unless asked (the GPU is shared anyway); on the CPU, one per CPU up to
    MAX_DEFAULT_INSTANCES, with the CPUs split between them (or, with the threads per session
    set, as many as those threads fill the CPUs)."""
    # With the threads per session given (as docker-compose.yml and the Kubernetes manifest
    # do, from the CPU limit), as many instances as fill the CPUs with them.
    per_instance = settings.intra_op_threads or 1
    instances = settings.instances or (1 if on_cuda else max(1, min(cpus // per_instance, MAX_DEFAULT_INSTANCES)))
    threads = settings.intra_op_threads or max(1, cpus // instances)
    fast_threads = max(threads, settings.intra_op_threads or cpus)
    # Spinning only pays where a run has intra-op threads to wake.
    fast_lane = settings.fast_lane and not on_cuda and fast_threads > 1
    return ThreadPlan(instances, threads, fast_lane, fast_threads if fast_lane else 0)


def _read_manifest(directory: Path) -> Manifest:
    path = directory / MANIFEST_FILE
    if not path.exists():
        raise ModelLoadError(f"{directory} has no {MANIFEST_FILE}: not a model directory")
    try:
        manifest = Manifest.read(directory)
    except OSError as exc:
        raise ModelLoadError(f"{path}: cannot be read ({exc.strerror})") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ModelLoadError(f"{path}: invalid manifest ({where}: {first['msg']})") from exc
    if manifest.format_version != FORMAT_VERSION:
        raise ModelLoadError(f"{path}: format_version {manifest.format_version}, expected {FORMAT_VERSION}")
    return manifest


def _check_present(directory: Path, manifest: Manifest) -> None:
    for name in manifest.files:
        if not (directory / name).is_file():
            raise ModelLoadError(f"{directory}: {name} is listed in the manifest but missing")


def verify_files(directory: Path, manifest: Manifest) -> None:
    """Every file the manifest lists present and matching its checksum: the one place a model
    file is hashed."""
    _check_present(directory, manifest)
    for name, digest in manifest.files.items():
        try:
            actual = sha256_file(directory / name)
        except OSError as exc:
            raise ModelLoadError(f"{directory}: {name} cannot be read ({exc.strerror or exc})") from exc
        if actual != digest:
            raise ModelLoadError(f"{directory}: {name} does not match its manifest checksum (corrupt or replaced)")


def file_stamps(directory: Path, manifest: Manifest) -> dict[str, FileStamp]:
    """Size and modification time of each file the manifest lists (a missing one is left out)."""
    stamps = {}
    for name in manifest.files:
        try:
            stat = (directory / name).stat()
        except OSError:
            continue
        stamps[name] = (stat.st_size, stat.st_mtime_ns)
    return stamps


def _candidates(manifest: Manifest, wanted: str, on_cuda: bool, directory: Path) -> tuple[tuple[str, ...], str]:
    """The variants the setting allows for this model, and why: one, or int8 and fp32 to be
    timed at load and chosen between (`auto` on the CPU with both exported:
    service/runtime/variants.py)."""
    if wanted != "auto":
        if wanted == "fp16" and not on_cuda:
            raise ModelLoadError(
                f"{directory}: variant fp16 needs the CUDA provider, and this process runs on the CPU "
                "(use int8, fp32 or auto)"
            )
        if wanted not in manifest.variants:
            raise ModelLoadError(
                f"{directory}: variant {wanted} requested but not exported (has {sorted(manifest.variants)})"
            )
        return (wanted,), f"BERTSERVE_VARIANT={wanted}"
    if on_cuda:
        if "fp16" in manifest.variants:
            return ("fp16",), "auto: fp16 on CUDA"
        return ("fp32",), "auto: fp32 on CUDA (no fp16 variant exported)"
    if all(v in manifest.variants for v in TIMED):
        return TIMED, "auto: int8 and fp32 timed at load"
    if "int8" in manifest.variants:  # a manifest that lists no fp32 graph
        return ("int8",), "auto: int8 on the CPU (no fp32 variant exported)"
    return ("fp32",), "auto: fp32 on the CPU (no int8 variant exported)"


def _check_fit(directory: Path, manifest: Manifest, session: OnnxSession) -> None:
    """The graph must take what the manifest says and give the width the task expects."""
    if sorted(session.input_names) != sorted(manifest.inputs):
        raise ModelLoadError(
            f"{directory}: graph inputs {session.input_names} do not match the manifest's {manifest.inputs}"
        )
    width = session.output_shape[-1] if session.output_shape else None
    labels = len(manifest.labels or [])
    expected = output_width(manifest.task, labels, manifest.dimension)
    if isinstance(width, int) and width != expected:
        raise ModelLoadError(f"{directory}: graph output width {width} does not match the manifest ({expected})")


def _check_vocabulary(directory: Path, encoder: TextEncoder, session: OnnxSession) -> None:
    """A tokenizer bigger than the graph's embedding table loads fine and then fails on the
    first input holding a token past the table: probe the largest id once, at start-up."""
    import numpy as np

    top = encoder.vocab_size - 1
    try:
        session.run([np.array([top], dtype=np.int64)])
    except InferenceError as exc:
        raise ModelLoadError(
            f"{directory}: the graph does not accept token id {top} of its {encoder.vocab_size}-token tokenizer "
            "(tokenizer and model do not match)"
        ) from exc
