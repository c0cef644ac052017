"""The bundled sample images: present, decodable, and attributed."""

from __future__ import annotations

import pytest

from skinfix_nb import samples


def test_names_are_the_four_bundled_files() -> None:
    assert samples.names() == ["astronaut", "camera", "grace_hopper", "luispedro"]
    assert set(samples.PORTRAITS) < set(samples.names())


@pytest.mark.parametrize(
    ("name", "size", "mode"),
    [
        ("astronaut", (512, 512), "RGB"),
        ("camera", (512, 512), "L"),
        ("grace_hopper", (512, 600), "RGB"),
        ("luispedro", (300, 377), "RGB"),
    ],
)
def test_each_sample_loads(name: str, size: tuple[int, int], mode: str) -> None:
    assert samples.path(name).is_file()
    image = samples.load(name)
    assert (image.size, image.mode) == (size, mode)


def test_unknown_name_lists_the_choices() -> None:
    with pytest.raises(KeyError, match="choose one of astronaut, camera"):
        samples.path("lena")


def test_every_file_is_attributed() -> None:
    attribution = (samples.path("camera").parent / "ATTRIBUTION.md").read_text()
    for name in samples.names():
        assert samples.path(name).name in attribution
    assert "MIT" in attribution
    assert "Public domain" in attribution
