"""Which variant a model serves: the setting's, or under `auto` on the CPU int8 where the CPU
has int8 dot-product instructions and fp32 where it has none, by the timing at load where its
instructions are unknown. The decision is pinned here on given figures and /proc/cpuinfo
texts; the timing itself, on real sessions, is in tests/integration/test_variants.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.manifest import Manifest, VariantInfo
from service.runtime.loader import ModelLoadError, _candidates, identity
from service.runtime.variants import MARGIN, PROBES, decide, int8_instructions, probe_batches


@pytest.mark.parametrize(
    ("int8_ms", "fp32_ms", "variant"),
    [
        (50.0, 100.0, "int8"),  # a CPU with VNNI: about twice as fast
        (79.0, 100.0, "int8"),  # 21% less time: past the margin
        (80.0, 100.0, "fp32"),  # exactly 20% less: within it
        (89.0, 100.0, "fp32"),  # the embedding model on a VNNI CPU: about 11% less
        (96.0, 100.0, "fp32"),
        (100.0, 100.0, "fp32"),
        (130.0, 100.0, "fp32"),
        # An AVX2 CPU without VNNI, its batch-1 and batch-32 figures summed: about 2% less.
        (10.9 + 309.0, 11.9 + 312.0, "fp32"),
    ],
)
def test_int8_serves_only_when_it_saves_more_than_the_margin(int8_ms: float, fp32_ms: float, variant: str) -> None:
    assert MARGIN == 0.20
    choice = decide(int8_ms, fp32_ms)
    assert choice.variant == variant
    assert (choice.int8_ms, choice.fp32_ms) == (int8_ms, fp32_ms)
    assert choice.candidates == ("int8", "fp32")
    assert choice.reason.startswith("auto: ")


X86_VNNI = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni avx_vnni\n"
X86_AVX2 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma\n"
ARM_DOT = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes crc32 atomics asimddp\n"
ARM_PLAIN = "processor\t: 0\nFeatures\t: fp asimd evtstrm\n"


@pytest.mark.parametrize(
    ("cpuinfo", "found"),
    [(X86_VNNI, "avx512_vnni"), (X86_AVX2, ""), (ARM_DOT, "asimddp"), (ARM_PLAIN, ""), ("processor\t: 0\n", None)],
)
def test_the_cpus_int8_instructions_are_read_from_its_flags(tmp_path: Path, cpuinfo: str, found: str | None) -> None:
    (tmp_path / "cpuinfo").write_text(cpuinfo)
    assert int8_instructions(tmp_path / "cpuinfo") == found
    assert int8_instructions(tmp_path / "absent") is None


@pytest.mark.parametrize(("int8_ms", "fp32_ms"), [(50.0, 100.0), (89.0, 100.0), (99.0, 100.0), (130.0, 100.0)])
def test_known_instructions_decide_whatever_the_timings(int8_ms: float, fp32_ms: float) -> None:
    """Two replicas of one host type must serve one variant: the timings, noisy on a shared
    host, only inform."""
    with_vnni = decide(int8_ms, fp32_ms, "avx512_vnni")
    without = decide(int8_ms, fp32_ms, "")
    assert (with_vnni.variant, without.variant) == ("int8", "fp32")
    assert (with_vnni.int8_ms, with_vnni.fp32_ms) == (int8_ms, fp32_ms)
    assert with_vnni.candidates == without.candidates == ("int8", "fp32")


def test_the_reason_says_what_decided() -> None:
    assert decide(89.0, 100.0, "avx_vnni").reason == (
        "auto: this CPU has avx_vnni (int8 dot products): int8; int8 took 11% less time than fp32 here"
    )
    assert decide(110.0, 100.0, "").reason == (
        "auto: this CPU has no int8 dot-product instructions (VNNI): fp32; int8 was no faster here"
    )
    assert decide(50.0, 100.0).reason == "auto: int8 takes 50% less time than fp32 on this CPU"
    assert decide(98.0, 100.0).reason == "auto: int8 saves 2.0% of fp32's time on this CPU, within 20%: fp32 kept"
    assert decide(110.0, 100.0).reason == "auto: fp32 as fast as int8 or faster on this CPU"
    assert decide(1.0, 2.0, margin=0.6).variant == "fp32"


def test_what_models_shows_is_rounded_to_microseconds() -> None:
    assert decide(10.123456, 20.5).as_dict() == {
        "int8_ms": 10.123,
        "fp32_ms": 20.5,
        "reason": "auto: int8 takes 51% less time than fp32 on this CPU",
    }


@pytest.mark.parametrize(("int8_ms", "fp32_ms"), [(0.0, 1.0), (1.0, 0.0), (-1.0, 1.0), (float("nan"), 1.0)])
def test_timings_that_cannot_be_are_refused(int8_ms: float, fp32_ms: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        decide(int8_ms, fp32_ms)


def test_the_probe_batches_are_cut_to_the_max_length() -> None:
    batches = probe_batches(256, 7)
    assert [(len(b), len(b[0])) for b in batches] == list(PROBES)
    assert all(int(row[0]) == 7 for b in batches for row in b)
    assert [(len(b), len(b[0])) for b in probe_batches(16, 7)] == [(rows, 16) for rows, _ in PROBES]


def _manifest(*variants: str) -> Manifest:
    files = {v: f"model.{v}.onnx" for v in variants}
    return Manifest(
        name="m",
        task="classify",
        architecture="bert",
        max_length=64,
        inputs=["input_ids", "attention_mask"],
        output="logits",
        labels=["a", "b"],
        variants={v: VariantInfo(file=files[v], precision=v) for v in variants},  # type: ignore[arg-type]
        files={name: f"sha-{v}" for v, name in files.items()},
    )


def test_auto_times_int8_and_fp32_on_the_cpu_only_when_both_are_there() -> None:
    here = Path("m")
    assert _candidates(_manifest("fp32", "int8"), "auto", False, here)[0] == ("int8", "fp32")
    assert _candidates(_manifest("fp32", "int8", "fp16"), "auto", False, here)[0] == ("int8", "fp32")
    assert _candidates(_manifest("fp32"), "auto", False, here) == (
        ("fp32",),
        "auto: fp32 on the CPU (no int8 variant exported)",
    )
    assert _candidates(_manifest("fp32", "int8", "fp16"), "auto", True, here) == (("fp16",), "auto: fp16 on CUDA")
    assert _candidates(_manifest("fp32", "int8"), "auto", True, here)[0] == ("fp32",)


def test_an_explicit_variant_is_served_as_asked_without_timing() -> None:
    here = Path("m")
    both = _manifest("fp32", "int8")
    assert _candidates(both, "int8", False, here) == (("int8",), "BERTSERVE_VARIANT=int8")
    assert _candidates(both, "fp32", False, here) == (("fp32",), "BERTSERVE_VARIANT=fp32")
    with pytest.raises(ModelLoadError, match="variant int8 requested but not exported"):
        _candidates(_manifest("fp32"), "int8", False, here)
    with pytest.raises(ModelLoadError, match="fp16 needs the CUDA provider"):
        _candidates(_manifest("fp32", "fp16"), "fp16", False, here)


def test_the_identity_a_reload_compares_does_not_depend_on_the_timing() -> None:
    """A rescan cannot time: with both timed, the model is the same while neither graph
    changes, whichever of the two serves."""
    both = _manifest("fp32", "int8")
    assert identity(both, ("int8", "fp32")) == "m/int8+fp32/sha-int8+sha-fp32"
    assert identity(both, ("fp32",)) == "m/fp32/sha-fp32"
    changed = _manifest("fp32", "int8")
    changed.files["model.fp32.onnx"] = "sha-other"
    assert identity(changed, ("int8", "fp32")) != identity(both, ("int8", "fp32"))
