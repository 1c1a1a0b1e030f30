"""Manifests: a CSV table, one row per case, validated in one place.

Columns:
    case_id: required; a plain file-name stem (see `case_id_problem`), since outputs are named by it.
    patient_id, site, modality: required with images.
    image, or one ``image_<channel>`` column per channel (multi-parametric MRI): required, unless
        the manifest holds feature bags only (below).
    label: optional non-negative integer class.
    mask, scribble, features: optional paths (ground-truth mask, scribble map, feature bag).
    split: optional, one of ``train``, ``val``, ``test``; no patient may sit in two splits.
    meta_*: free-form columns kept as strings.

A *bag-only* manifest (CLAM/TRIDENT bags, no slides) has no image column and a ``features`` path on
every row; ``patient_id``, ``site`` and ``modality`` are then optional, and absent or empty ones
default to the case id, ``unknown`` and ``""`` (unknown: the loader does not open the bags).
Only the MIL workflows (`load_manifest(..., images=False)`) take such a manifest; every other
workflow refuses it at its entry with "needs an image column".

Relative paths resolve against the manifest's folder.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from medwss.errors import InvalidDataError, ManifestError, require_file
from medwss.io.atomic import write_text

REQUIRED = ("case_id", "patient_id", "site", "modality")
BAG_ONLY_REQUIRED = ("case_id", "features")  # a manifest of feature bags without images
BAG_ONLY_DEFAULT_SITE = "unknown"
MAX_CASE_ID_BYTES = 200  # outputs add suffixes such as "_heatmap.geojson"; file names stop at 255 bytes
_UNSAFE_ID_CHARS = set('/\\:*?"<>|')
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
    source: Path | None = None  # the manifest it came from

    @property
    def image(self) -> Path:
        """The single image, or the first channel of a multi-channel case.

        Raises:
            InvalidDataError: The case has no image (a bag-only manifest); names the manifest.
        """
        if not self.images:
            raise InvalidDataError(
                f"case {self.case_id} has no image: this step needs an image column (the manifest holds feature bags only)",
                self.source,
            )
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


def case_id_problem(case_id: str) -> str | None:
    """Why `case_id` cannot name output files (None when it can).

    Outputs are written as ``OUT/<case_id><suffix>``, so an id must be one plain file-name stem:
    not empty, ``.`` or ``..``; no ``..``, path separator (``/``, ``\\``), drive colon, NUL or other
    control character, no ``* ? " < > |`` (refused by Windows), and at most `MAX_CASE_ID_BYTES`
    bytes of UTF-8. An absolute path always fails (it starts with a separator or a drive).
    """
    if not case_id:
        return "empty case_id"
    if case_id in (".", ".."):
        return f"case_id '{case_id}' is not a file name"
    bad = [repr(ch) for ch in sorted(set(case_id)) if ch in _UNSAFE_ID_CHARS or ord(ch) < 32 or ord(ch) == 127]
    if ".." in case_id:
        bad.append("'..'")
    if bad:
        return f"case_id {case_id!r} contains {', '.join(bad)}: it names output files (use letters, digits, - _ .)"
    if len(case_id.encode("utf-8")) > MAX_CASE_ID_BYTES:
        return f"case_id of {len(case_id.encode('utf-8'))} bytes is longer than {MAX_CASE_ID_BYTES}"
    return None


def case_path(out: str | Path, case_id: str, suffix: str = "") -> Path:
    """``out / f"{case_id}{suffix}"``, refusing an id that would leave `out` (the manifest check's rule).

    Raises:
        InvalidDataError: `case_id` is not a safe file-name stem, or the path resolves outside `out`.
    """
    out = Path(out)
    problem = case_id_problem(case_id)
    if problem is None and "/" not in suffix and "\\" not in suffix:
        path = out / f"{case_id}{suffix}"
        if path.resolve().parent == out.resolve():
            return path
        problem = f"case_id {case_id!r} resolves outside the output folder"
    raise InvalidDataError(problem or f"suffix {suffix!r} is not a file-name suffix", out)


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


def _bag_only(columns: list[str]) -> bool:
    """No image column but a features column: a manifest of feature bags alone."""
    return "features" in columns and not any(_is_image_column(c) for c in columns)


def _check_columns(columns: list[str]) -> list[str]:
    required = BAG_ONLY_REQUIRED if _bag_only(columns) else REQUIRED
    problems = [f"missing required column '{c}'" for c in required if c not in columns]
    image_cols = [c for c in columns if _is_image_column(c)]
    if not image_cols and "features" not in columns:
        problems.append(
            "no image column: add 'image' or one 'image_<channel>' column per channel "
            "(or a 'features' column for a manifest of feature bags alone)"
        )
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
    bag_only = _bag_only(columns)
    required = BAG_ONLY_REQUIRED if bag_only else REQUIRED
    for i, row in enumerate(rows, start=2):  # line 1 is the header
        where = f"line {i}"
        cid = row.get("case_id", "")
        if cid:
            where += f" ({cid!r})" if case_id_problem(cid) else f" ({cid})"
            if cid in seen:
                problems.append(f"{where}: duplicate case_id, first on line {seen[cid]}")
            else:
                seen[cid] = i
            bad_id = case_id_problem(cid)
            if bad_id:
                problems.append(f"{where}: {bad_id}")
        for c in required:
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
            if row.get("patient_id") or (bag_only and cid):
                splits_of[row.get("patient_id") or cid].add(split)
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


def load_manifest(path: str | Path, check_files: bool = True, images: bool = True) -> Manifest:
    """Read and validate a manifest; raise `ManifestError` listing every problem if it is invalid.

    Args:
        path: The manifest CSV.
        check_files: Also check that every path in it exists.
        images: The workflow needs images: a bag-only manifest (no image column, see the module
            docstring) is refused with one line. The MIL workflows pass False.
    """
    path = require_file(path)
    problems = check_manifest(path, check_files)
    if problems:
        raise ManifestError(problems, path)
    columns, rows = _read_rows(path)
    if images and _bag_only(columns):
        raise ManifestError(
            [
                "needs an image column ('image' or 'image_<channel>'): this manifest holds feature bags only, "
                "which only `medwss mil train|predict|heatmap` take"
            ],
            path,
        )
    root = path.parent
    cases = []
    for row in rows:
        imgs = {c: _resolve(row[c], root) for c in columns if _is_image_column(c)}
        cases.append(
            Case(
                case_id=row["case_id"],
                patient_id=row.get("patient_id") or row["case_id"],
                site=row.get("site") or BAG_ONLY_DEFAULT_SITE,
                modality=row.get("modality") or "",
                images={("image" if c == "image" else c[len("image_") :]): p for c, p in imgs.items()},
                label=int(row["label"]) if row.get("label") else None,
                mask=_resolve(row["mask"], root) if row.get("mask") else None,
                scribble=_resolve(row["scribble"], root) if row.get("scribble") else None,
                features=_resolve(row["features"], root) if row.get("features") else None,
                split=row.get("split") or None,
                meta={c[len("meta_") :]: row[c] for c in columns if c.startswith("meta_")},
                source=path,
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
