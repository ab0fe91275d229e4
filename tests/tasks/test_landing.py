"""New-data landing folder: merged into data/ when valid, rejected whole when not."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tasks.ingest import IngestError, ingest
from tasks.landing import merge_landing, pending_files


def land(
    landing: Path, class_name: str, count: int, shape: tuple[int, int] = (8, 8), prefix: str = "new"
) -> None:
    (landing / class_name).mkdir(parents=True, exist_ok=True)
    for index in range(count):
        Image.fromarray(np.full(shape, 10 * index, np.uint8)).save(
            landing / class_name / f"{prefix}{index}.png"
        )


def test_new_images_are_appended_and_the_landing_folder_emptied(tmp_path: Path) -> None:
    data = tmp_path / "data"
    ingest("digits", None, data)
    land(tmp_path / "landing", "3", 4)
    batch = merge_landing(tmp_path / "landing", data)
    assert batch.files == 4 and batch.per_class == {"3": 4}
    assert len(list((data / "3").glob("*.png"))) == 183 + 4
    # Numbered after the last file of the class, with the landed pixels.
    landed = np.asarray(Image.open(data / "3" / "00185.png"))
    np.testing.assert_array_equal(landed, np.full((8, 8), 20, np.uint8))
    manifest = json.loads((data / "manifest.json").read_text())
    assert manifest["count"] == 1797 + 4 and manifest["class_counts"]["3"] == 187
    assert pending_files(tmp_path / "landing") == []
    assert merge_landing(tmp_path / "landing", data).files == 0


@pytest.mark.parametrize(
    ("class_name", "shape", "message"),
    [("cat", (8, 8), "not one of the dataset's classes"), ("3", (9, 9), "differs from")],
)
def test_a_bad_landing_batch_changes_nothing(
    tmp_path: Path, class_name: str, shape: tuple[int, int], message: str
) -> None:
    data = tmp_path / "data"
    ingest("digits", None, data)
    before = sorted(p.name for p in (data / "3").iterdir())
    land(tmp_path / "landing", "3", 2)
    land(tmp_path / "landing", class_name, 1, shape, prefix="bad")
    with pytest.raises(IngestError, match=message):
        merge_landing(tmp_path / "landing", data)
    assert sorted(p.name for p in (data / "3").iterdir()) == before
    assert len(pending_files(tmp_path / "landing")) == 3
