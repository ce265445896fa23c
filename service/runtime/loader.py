"""Load and check model directories. Every failure is one line naming what is wrong."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from service.kinds import output_width
from service.manifest import FORMAT_VERSION, MANIFEST_FILE, Manifest, sha256_file
from service.runtime.cpus import available_cpus
from service.runtime.session import CUDA, InferenceError, OnnxSession, SessionError, resolve_providers
from service.runtime.shared_weights import SharedWeights, shared_initializers
from service.runtime.tokenizer import TextEncoder, TokenizerError
from service.settings import Settings


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
        return identity(self.manifest, self.variant)


@dataclass(frozen=True)
class Found:
    """A model directory as a rescan sees it: read, not loaded."""

    directory: Path
    name: str
    identity: str
    manifest: Manifest


def graph_sha256(manifest: Manifest, variant: str) -> str:
    return manifest.files.get(manifest.variants[variant].file, "")


def identity(manifest: Manifest, variant: str) -> str:
    """What the result cache keys on and a reload compares: another graph (its checksum) or
    another variant of the same name is another model."""
    return f"{manifest.name}/{variant}/{graph_sha256(manifest, variant)}"


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
        variant = _pick_variant(manifest, settings.variant, on_cuda, directory)
        found.append(Found(directory, manifest.name, identity(manifest, variant), manifest))
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
    variant = _pick_variant(manifest, settings.variant, on_cuda, directory)
    plan = thread_plan(settings, available_cpus(), on_cuda)
    graph = directory / manifest.variants[variant].file
    shared: SharedWeights = []
    if settings.share_weights and not on_cuda and (plan.instances > 1 or plan.fast_lane):
        try:
            shared = shared_initializers(graph)
        except Exception:  # onnx and protobuf raise their own types for a graph they cannot parse
            shared = []  # opening the session then says what is wrong with it, in onnxruntime's words

    def open_session(spinning: bool, threads: int = plan.threads) -> OnnxSession:
        return OnnxSession(
            graph,
            output=manifest.output,
            pad_token_id=manifest.pad_token_id,
            providers=providers,
            threads=threads,
            io_binding=settings.io_binding,
            spinning=spinning,
            nice=settings.runtime_nice,
            initializers=shared,
        )

    sessions: list[OnnxSession] = []
    try:
        sessions.append(open_session(False))
        encoder = TextEncoder(directory / "tokenizer.json", manifest.max_length)
        _check_fit(directory, manifest, sessions[0])
        if settings.verify_models:
            _check_vocabulary(directory, encoder, sessions[0])
        sessions += [open_session(False) for _ in range(plan.instances - 1)]
        fast = open_session(True, plan.fast_threads) if plan.fast_lane else None
    except BaseException as exc:
        for session in sessions:  # those opened before the failure, freed now, whatever it was
            session.close()
        if isinstance(exc, SessionError | TokenizerError):
            raise ModelLoadError(f"{directory}: {exc}") from exc
        raise
    return LoadedModel(directory, manifest, encoder, sessions, variant, stamps=stamps, fast=fast)


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


def _pick_variant(manifest: Manifest, wanted: str, on_cuda: bool, directory: Path) -> str:
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
        return wanted
    preferred = "fp16" if on_cuda else "int8"
    return preferred if preferred in manifest.variants else "fp32"


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
