"""Aerial tiles from a folder of north-up images listed in a CSV with columns ``file,lat,lon`` (centres in WGS84).

Shards are blocks of consecutive CSV rows (the CSV's order is the user's; a folder carries no grid to cut by)."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np

from .ortho import OrthoError, ShardCounts, TileBatch


class TileFolderSource:
    """Tiles listed in a CSV, read file by file, a shard (``shard_side`` squared rows) at a time."""

    kind = "tiles"

    def __init__(self, folder, csv_path, shard_side: int = 64):
        self.folder, self.csv_path = Path(folder), Path(csv_path)
        if not self.csv_path.exists():
            raise OrthoError(f"CSV {self.csv_path}: no such file")
        with open(self.csv_path, newline="") as f:
            reader = csv.DictReader(f)
            cols = {c.strip().lower(): c for c in (reader.fieldnames or [])}
            need = ("file", "lat", "lon")
            missing = [c for c in need if c not in cols]
            if missing:
                raise OrthoError(f"CSV {self.csv_path}: missing column(s) {missing}; need {list(need)}, has "
                                 f"{list(cols)}")
            rows = list(reader)
        if not rows:
            raise OrthoError(f"CSV {self.csv_path}: no rows")
        try:
            self.files = [self.folder / r[cols["file"]].strip() for r in rows]
            self.lat = np.array([float(r[cols["lat"]]) for r in rows])
            self.lon = np.array([float(r[cols["lon"]]) for r in rows])
        except (ValueError, TypeError) as exc:
            raise OrthoError(f"CSV {self.csv_path}: bad number ({exc})") from None
        self.shard_side = int(shard_side)
        self.n_positions = len(rows)
        self._per_shard = self.shard_side ** 2
        self.n_shards = -(-self.n_positions // self._per_shard)

    def recipe(self) -> dict:
        return {"kind": self.kind, "folder": str(self.folder), "csv_path": str(self.csv_path),
                "shard_side": self.shard_side}

    def fingerprint(self) -> str:
        return hashlib.sha256(self.csv_path.read_bytes() + str(self.shard_side).encode()).hexdigest()

    def describe(self) -> dict:
        return {"tiles_dir": str(self.folder), "csv": str(self.csv_path), "positions": self.n_positions}

    def shard_batches(self, shard: int, batch: int, counts: ShardCounts):
        import cv2

        first = int(shard) * self._per_shard
        ids = np.arange(first, min(first + self._per_shard, self.n_positions))
        counts.positions += len(ids)
        for i in range(0, len(ids), batch):
            sel = ids[i:i + batch]
            tiles = []
            for k in sel:
                im = cv2.imread(str(self.files[k]), cv2.IMREAD_COLOR)
                if im is None:
                    raise OrthoError(f"tile {self.files[k]}: missing or not an image")
                tiles.append(im[:, :, ::-1])
            yield TileBatch(sel, tiles, self.lat[sel], self.lon[sel])

    def close(self) -> None:
        pass
