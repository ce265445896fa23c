import base64

import numpy as np

from service.tasks.embed.post import finalize, to_base64


def test_normalize_gives_unit_vectors() -> None:
    v = np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float32)
    out = finalize(v, normalize=True, dimensions=None)
    assert np.allclose(out[0], [0.6, 0.8])
    assert np.allclose(out[1], [0.0, 0.0])  # a zero vector stays zero, no NaN


def test_dimensions_cut_then_renormalise() -> None:
    v = np.array([[1.0, 1.0, 10.0]], dtype=np.float32)
    out = finalize(v, normalize=True, dimensions=2)
    assert out.shape == (1, 2)
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0)
    raw = finalize(v, normalize=False, dimensions=2)
    assert np.allclose(raw, [[1.0, 1.0]])


def test_base64_is_little_endian_float32() -> None:
    v = np.array([[1.5, -2.0]], dtype=np.float32)
    (encoded,) = to_base64(v)
    assert np.allclose(np.frombuffer(base64.b64decode(encoded), dtype="<f4"), [1.5, -2.0])
