"""Manifests: a CSV table, one row per case, validated in one place.

Columns:
    case_id, patient_id, site, modality: required.
    image, or one ``image_<channel>`` column per channel (multi-parametric MRI): required.
    label: optional non-negative integer class.
    mask, scribble, features: optional paths (ground-truth mask, scribble map, feature bag).
    split: optional, one of ``train``, ``val``, ``test``; no patient may sit in two splits.
    meta_*: free-form columns kept as strings.

Relative paths resolve against the manifest's folder.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from medwss.errors import ManifestError, require_file
from medwss.io.atomic import write_text

REQUIRED = ("case_id", "patient_id", "site", "modality")
PATH_COLUMNS = ("mask", "scribble", "features")
OPTIONAL = ("label",) + PATH_COLUMNS + ("split",)
SPLITS = ("train", "val", "test")
MODALITIES = ("CT", "MR", "WSI", "PT", "US", "XR", "MG", "OT")


@dataclass
class Case:
    """One row of a manifest, with paths resolved."""

    case_id: str
    patient_id: str
    site: str
    modality: str
    images: dict[str, Path]
    label: int | None = None
    mask: Path | None = None
    scribble: Path | None = None
    features: Path | None = None
    split: str | None = None
    meta: dict[str, str] = field(default_factory=dict)

    @property
    def image(self) -> Path:
        """The single image, or the first channel of a multi-channel case."""
        return self.images.get("image", next(iter(self.images.values())))


@dataclass
class Manifest:
    """A validated manifest."""

    path: Path | None
    cases: list[Case]

    def __len__(self) -> int:
        return len(self.cases)

    def __iter__(self):  # noqa: ANN204
        return iter(self.cases)

    def split(self, name: str) -> list[Case]:
        return [c for c in self.cases if c.split == name]

    def select(self, split: str | Sequence[str] | None = None, sites: Sequence[str] | None = None) -> list[Case]:
        """The cases in `split` (one name or several) and at `sites`; None selects any.

        Raises:
            ManifestError: No case matches (never a silent fallback to every case).
        """
        return select_cases(self.cases, split, sites, self.path)

    @property
    def channels(self) -> list[str]:
        return list(self.cases[0].images) if self.cases else []


def select_cases(
    cases: Sequence[Case],
    split: str | Sequence[str] | None = None,
    sites: Sequence[str] | None = None,
    source: str | Path | None = None,
) -> list[Case]:
    """The `cases` in `split` (one name or several) and at `sites` (None: any), as `Manifest.select`.

    Raises:
        ManifestError: An unknown split name, or no case matches; the message says which splits
            and sites the cases do have. `source` (the manifest) is named in it.
    """
    splits = None if split is None else [split] if isinstance(split, str) else list(split)
    unknown = [s for s in splits or [] if s not in SPLITS]
    if unknown:
        raise ManifestError([f"unknown split {', '.join(map(repr, unknown))}: use {', '.join(SPLITS)}"], source)
    chosen = [c for c in cases if (splits is None or c.split in splits) and (sites is None or c.site in sites)]
    if not chosen:
        wanted = " and ".join(
            part
            for part in (
                f"split {'/'.join(splits)}" if splits is not None else "",
                f"site {'/'.join(sites)}" if sites is not None else "",
            )
            if part
        )
        have_splits = sorted({c.split or "(none)" for c in cases})
        have_sites = sorted({c.site for c in cases})
        raise ManifestError(
            [
                f"no case in {wanted or 'the manifest'} (of {len(cases)} case(s); splits: "
                f"{', '.join(have_splits) or '-'}; sites: {', '.join(have_sites) or '-'})"
            ],
            source,
        )
    return chosen


def _is_image_column(col: str) -> bool:
    return col == "image" or (col.startswith("image_") and len(col) > len("image_"))


def _resolve(value: str, root: Path) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else root / p


def _read_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        rows = [{k: (v or "").strip() for k, v in r.items() if k is not None} for r in reader]
        return [c.strip() for c in (reader.fieldnames or [])], rows


def _check_columns(columns: list[str]) -> list[str]:
    problems = [f"missing required column '{c}'" for c in REQUIRED if c not in columns]
    image_cols = [c for c in columns if _is_image_column(c)]
    if not image_cols:
        problems.append("no image column: add 'image' or one 'image_<channel>' column per channel")
    if "image" in image_cols and len(image_cols) > 1:
        problems.append("use either 'image' or 'image_<channel>' columns, not both")
    known = set(REQUIRED) | set(OPTIONAL)
    for c in columns:
        if c not in known and not _is_image_column(c) and not c.startswith("meta_"):
            problems.append(f"unknown column '{c}' (free-form columns must start with 'meta_')")
    dup = {c for c in columns if columns.count(c) > 1}
    problems += [f"column '{c}' appears more than once" for c in sorted(dup)]
    return problems


def _check_rows(rows: list[dict[str, str]], columns: list[str], root: Path, check_files: bool) -> list[str]:
    problems: list[str] = []
    seen: dict[str, int] = {}
    splits_of: dict[str, set[str]] = defaultdict(set)
    path_cols = [c for c in columns if _is_image_column(c) or c in PATH_COLUMNS]
    for i, row in enumerate(rows, start=2):  # line 1 is the header
        where = f"line {i}"
        cid = row.get("case_id", "")
        if cid:
            where += f" ({cid})"
            if cid in seen:
                problems.append(f"{where}: duplicate case_id, first on line {seen[cid]}")
            else:
                seen[cid] = i
        for c in REQUIRED:
            if c in columns and not row.get(c):
                problems.append(f"{where}: empty {c}")
        mod = row.get("modality", "")
        if mod and mod not in MODALITIES:
            problems.append(f"{where}: modality '{mod}' is not one of {', '.join(MODALITIES)}")
        label = row.get("label", "")
        if label and not (label.isdigit()):
            problems.append(f"{where}: label '{label}' is not a non-negative integer")
        split = row.get("split", "")
        if split:
            if split not in SPLITS:
                problems.append(f"{where}: split '{split}' is not one of {', '.join(SPLITS)}")
            if row.get("patient_id"):
                splits_of[row["patient_id"]].add(split)
        for c in path_cols:
            value = row.get(c, "")
            if _is_image_column(c) and not value:
                problems.append(f"{where}: empty {c}")
            elif value and check_files and not _resolve(value, root).exists():
                problems.append(f"{where}: {c} file not found: {value}")
    for pid, splits in sorted(splits_of.items()):
        if len(splits) > 1:
            problems.append(f"patient '{pid}' is in several splits ({', '.join(sorted(splits))}): leakage")
    return problems


def check_manifest(path: str | Path, check_files: bool = True) -> list[str]:
    """Every problem of the manifest at `path`, as one-line messages; empty when it is valid."""
    path = require_file(path)
    try:
        columns, rows = _read_rows(path)
    except (csv.Error, UnicodeDecodeError) as exc:
        return [f"not a readable CSV ({exc})"]
    problems = _check_columns(columns)
    if not rows:
        problems.append("no cases")
    return problems + _check_rows(rows, columns, path.parent, check_files)


def load_manifest(path: str | Path, check_files: bool = True) -> Manifest:
    """Read and validate a manifest; raise `ManifestError` listing every problem if it is invalid."""
    path = require_file(path)
    problems = check_manifest(path, check_files)
    if problems:
        raise ManifestError(problems, path)
    columns, rows = _read_rows(path)
    root = path.parent
    cases = []
    for row in rows:
        images = {c: _resolve(row[c], root) for c in columns if _is_image_column(c)}
        cases.append(
            Case(
                case_id=row["case_id"],
                patient_id=row["patient_id"],
                site=row["site"],
                modality=row["modality"],
                images={("image" if c == "image" else c[len("image_") :]): p for c, p in images.items()},
                label=int(row["label"]) if row.get("label") else None,
                mask=_resolve(row["mask"], root) if row.get("mask") else None,
                scribble=_resolve(row["scribble"], root) if row.get("scribble") else None,
                features=_resolve(row["features"], root) if row.get("features") else None,
                split=row.get("split") or None,
                meta={c[len("meta_") :]: row[c] for c in columns if c.startswith("meta_")},
            )
        )
    return Manifest(path, cases)


def _order(columns: list[str]) -> list[str]:
    images = [c for c in columns if _is_image_column(c)]  # channel order as given
    meta = sorted(c for c in columns if c.startswith("meta_"))
    fixed = [c for c in REQUIRED if c in columns] + images + [c for c in OPTIONAL if c in columns]
    return fixed + meta + sorted(set(columns) - set(fixed) - set(meta))


def write_manifest(rows: list[dict[str, object]], path: str | Path, relative: bool = True) -> Path:
    """Write rows as a manifest CSV, atomically.

    Args:
        rows: One dict per case; path values (``Path`` objects or strings) are written as given,
            or relative to the manifest's folder when `relative` and they lie under it.
        path: Output CSV.
        relative: Write paths under the manifest's folder as relative paths.
    """
    path = Path(path)
    root = path.parent.resolve()
    columns = _order(list(dict.fromkeys(k for r in rows for k in r)))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        out = {}
        for k, v in r.items():
            if isinstance(v, Path):
                v = v.resolve()
                if relative and v.is_relative_to(root):
                    v = v.relative_to(root)
                v = v.as_posix()
            out[k] = "" if v is None else str(v)
        writer.writerow(out)
    return write_text(path, buf.getvalue())
