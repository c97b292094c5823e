"""Derive the HaGRID landmark CSVs of data/natural/ and data/heldout/ from HaGRID's annotation files.

    python data/natural/extract_hagrid.py ann_subsample.zip ann_test.zip

Input: the two zip files as committed in pragyasharma123/ViTPoseandGesture (commit eb5128e8, blobs
e85b75f6... and 288421ee...; read with `git cat-file blob`). Nothing from that repository is run.
`ann_test.zip`'s members were cut off at upload; only the complete entries before each cut are read.

Every hand with 21 landmarks becomes one kp42 row: HaGRID's normalised x,y taken as a portrait FullHD
frame (x * 1080 / 1920, y), minus the wrist, divided by the largest absolute value, 6 significant
digits (the same rules as data/gestures/hagrid_subsample_annotations_kp42.csv). `source` is
`hagrid-user:<user_id>` (HaGRID's own anonymous person id), so rows can be grouped by person.

Outputs (see data/natural/SOURCES.md):
* data/natural/hagrid_no_gesture_kp42.csv: every `no_gesture` hand of both files (natural hands);
* data/heldout/hagrid_test_gestures_kp42.csv: the gesture hands of `ann_test` images that are not in
  `ann_subsample` (whose gesture hands are training rows): new people, evaluation only. (The two
  files hash `user_id` differently, so people cannot be matched across them; the user filter below
  removes nothing and is kept only as a guard.)
"""

from __future__ import annotations

import csv
import json
import sys
import zipfile
from pathlib import Path

REPO = "pragyasharma123/ViTPoseandGesture"
COMMIT = "eb5128e80d772d6e884f03828256a351daeebfa4"
HEADER = ["source", "format", "kind", "label", "orig_label", "commit", "path"] + [
    f"{a}{i}" for i in range(1, 22) for a in ("x", "y", "z")]
ROOT = Path(__file__).resolve().parents[2]


def complete_entries(text: str) -> dict[str, dict]:
    """The `{"uuid": {...}, ...}` entries of a JSON object, up to the first incomplete one."""
    dec = json.JSONDecoder()
    out: dict[str, dict] = {}
    i = text.index("{") + 1
    while True:
        while i < len(text) and text[i] in " \t\r\n,":
            i += 1
        if i >= len(text) or text[i] == "}":
            return out
        try:
            key, i = dec.raw_decode(text, i)
            while text[i] in " \t\r\n:":
                i += 1
            value, i = dec.raw_decode(text, i)
        except (json.JSONDecodeError, IndexError):
            return out
        out[key] = value


def kp42(points: list[list[float]]) -> list[float] | None:
    if len(points) != 21 or any(len(p) < 2 for p in points):
        return None
    xy = [(float(p[0]) * 1080.0 / 1920.0, float(p[1])) for p in points]
    wx, wy = xy[0]
    rel = [(x - wx, y - wy) for x, y in xy]
    scale = max(max(abs(x), abs(y)) for x, y in rel)
    if scale <= 0:
        return None
    return [v / scale for pair in rel for v in pair]


def hands(zip_path: Path) -> list[tuple[str, str, str, str, list[float]]]:
    """(member, uuid, user_id, label, kp42 values) of every hand with landmarks."""
    rows = []
    with zipfile.ZipFile(zip_path) as z:
        for member in sorted(n for n in z.namelist() if n.endswith(".json") and not n.startswith("__MACOSX")):
            entries = complete_entries(z.read(member).decode("utf-8", errors="ignore"))
            for uuid, e in entries.items():
                for label, points in zip(e.get("labels", []), e.get("landmarks", []), strict=False):
                    values = kp42(points or [])
                    if values is not None:
                        rows.append((f"{zip_path.name}:{member}", uuid, str(e.get("user_id", "")), label, values))
    return rows


def write(path: Path, rows: list[tuple[str, str, str, str, list[float]]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        w = csv.writer(handle)
        w.writerow(HEADER)
        for member, _uuid, user, label, values in rows:
            cells = []
            for k in range(21):
                cells += [f"{values[2 * k]:.6g}", f"{values[2 * k + 1]:.6g}", ""]
            w.writerow([f"hagrid-user:{user}", "kp42", "hagrid_annotation_landmarks", label, label, COMMIT,
                        member, *cells])


def main(subsample_zip: str, test_zip: str) -> None:
    sub, test = hands(Path(subsample_zip)), hands(Path(test_zip))
    sub_images = {r[1] for r in sub}
    sub_users = {r[2] for r in sub}
    natural, seen = [], set()
    for r in sub + test:  # an image in both files counts once
        if r[3] == "no_gesture" and (r[1], tuple(r[4])) not in seen:
            seen.add((r[1], tuple(r[4])))
            natural.append(r)
    held = [r for r in test if r[3] != "no_gesture" and r[1] not in sub_images and r[2] not in sub_users]
    write(ROOT / "data" / "natural" / "hagrid_no_gesture_kp42.csv", natural)
    write(ROOT / "data" / "heldout" / "hagrid_test_gestures_kp42.csv", held)
    print(f"natural hands: {len(natural)} ({len({r[2] for r in natural})} people); held-out gesture hands: "
          f"{len(held)} ({len({r[2] for r in held})} people; subsample people and images left out)")


if __name__ == "__main__":
    main(*sys.argv[1:3])
