"""Fuzz the CLI's error contract with seeded hostile inputs of every class of issue #21.

For a representative command per class, through `medwss.cli.main.main`: the exit code is 2 (the
job failed, or a job-wide error) or 3 (some cases failed, the others are done); stderr holds no
traceback, and either one line naming the bad file or per-case lines ending in the one-line
summary that names the failure log; nothing is written outside ``--out``.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest

from medwss.cli.main import main
from medwss.jobs import read_failures

SEED = 21


def snapshot(root: Path, skip: Path) -> set[Path]:
    """Every path under `root` outside `skip`."""
    return {p for p in root.rglob("*") if skip not in p.parents and p != skip}


def run(argv: list[str], capsys: pytest.CaptureFixture, root: Path, out: Path) -> tuple[int, list[str]]:
    """Run medwss; check no traceback and no write outside `out`; return the exit code and stderr lines."""
    before = snapshot(root, out)
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err and 'File "' not in err, err
    assert snapshot(root, out) == before, "written outside --out"
    return code, [line for line in err.splitlines() if line.strip()]


def one_line_naming(lines: list[str], name: str) -> None:
    assert len(lines) == 1 and lines[0].startswith("medwss: error: ") and name in lines[0], lines


def volume(path: Path, fill: float | None = None) -> Path:
    v = np.zeros((16, 16, 4), np.float32)
    v[4:12, 4:12] = 100.0
    if fill is not None:
        v[...] = fill
    nib.save(nib.Nifti1Image(v, np.eye(4)), str(path))
    return path


def forged_nifti(path: Path, shape: tuple[int, ...]) -> Path:
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(np.int16)
    hdr["vox_offset"] = 352
    path.write_bytes(hdr.binaryblock + b"\0" * 4 + b"\0" * 1000)
    return path


def manifest(path: Path, rows: list[tuple[str, Path]], extra: str = "") -> Path:
    lines = ["case_id,patient_id,site,modality,image" + (",mask" if extra else "")]
    lines += [f"{cid},p{i},s,CT,{img}" + (f",{extra}" if extra else "") for i, (cid, img) in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "a" / "b"  # ../../ from OUT stays inside tmp_path, where `run` looks
    r.mkdir(parents=True)
    return r


def bad_case_ids(tmp_path: Path) -> list[str]:
    rng = np.random.default_rng(SEED)
    ids = ["../../esc", "..", "a/../../b", str(tmp_path / "abs_esc"), "x" * int(rng.integers(256, 400)), "sub/dir"]
    ids.append("".join(rng.choice(list("./\\"), 6)))
    return ids


def test_path_traversal_case_ids_refused(root, tmp_path, capsys):
    good = volume(root / "v.nii.gz")
    out = root / "out"
    for cid in bad_case_ids(tmp_path):
        m = manifest(root / "m.csv", [(cid, good), ("ok", good)])
        code, lines = run(["tile", m, "--out", out, "--quiet"], capsys, tmp_path, out)
        assert code == 2
        one_line_naming(lines, "m.csv")
    m.unlink()


def test_huge_header_claims_and_nan_volumes_fail_their_case(root, tmp_path, capsys):
    rng = np.random.default_rng(SEED)
    side = int(rng.integers(1500, 3000))
    bomb = forged_nifti(root / "bomb.nii.gz", (side, side, side))
    code, lines = run(["info", bomb], capsys, tmp_path, root / "none")
    assert code == 2
    one_line_naming(lines, "bomb.nii.gz")
    nan = volume(root / "nan.nii.gz", fill=float("nan"))
    m = manifest(root / "m.csv", [("bomb", bomb), ("nan", nan), ("ok", volume(root / "v.nii.gz"))])
    out = root / "tiles"
    code, lines = run(["tile", m, "--out", out, "--tile-size", "8", "--quiet"], capsys, tmp_path, out)
    assert code == 3 and lines[-1] == f"medwss tile: 1 done, 2 failed; see {out / 'failures.csv'}"
    rows = {r["case_id"]: r["message"] for r in read_failures(out / "failures.csv")}
    assert set(rows) == {"bomb", "nan"} and "bomb.nii.gz" in rows["bomb"] and "NaN" in rows["nan"]


def _bags(root: Path, n: int = 4) -> list[Path]:
    rng = np.random.default_rng(SEED)
    paths = []
    for i in range(n):
        p = root / f"b{i}.h5"
        with h5py.File(p, "w") as f:
            f.create_dataset("features", data=rng.normal(size=(6, 4)).astype(np.float32))
            f.create_dataset("coords", data=np.stack([np.arange(6) * 32, np.zeros(6)], 1).astype(np.int64))
        paths.append(p)
    return paths


def _model(root: Path) -> Path:
    from medwss.mil.registry import create_aggregator
    from medwss.mil.train import save_model

    meta = {"aggregator": "mean", "aggregator_kwargs": {}, "in_dim": 4, "n_classes": 1}
    return save_model(root / "model.pt", create_aggregator("mean", 4, 1), meta)


def _bag_manifest(path: Path, bags: list[Path]) -> Path:
    rows = [f"c{i},p{i},{i % 2},{b}" for i, b in enumerate(bags)]
    path.write_text("case_id,patient_id,label,features\n" + "\n".join(rows) + "\n")
    return path


def test_nan_features_fail_their_case_unless_kept(root, tmp_path, capsys):
    bags = _bags(root)
    with h5py.File(bags[1], "r+") as f:
        f["features"][2, 1] = np.nan
    m, model = _bag_manifest(root / "m.csv", bags), _model(root)
    out = root / "out"
    preds = out / "p.csv"
    code, lines = run(["mil", "predict", m, "--model", model, "--out", preds], capsys, tmp_path, out)
    assert code == 3 and lines == [f"medwss mil predict: 3 done, 1 failed; see {out / 'p.failures.csv'}"]
    (row,) = read_failures(out / "p.failures.csv")
    assert row["case_id"] == "c1" and "b1.h5" in row["message"] and "NaN" in row["message"]
    code, lines = run(["mil", "predict", m, "--model", model, "--out", preds, "--nan", "keep"], capsys, tmp_path, out)
    assert code == 0 and lines == ["medwss mil predict: 4 done, 0 failed"] and "nan" in preds.read_text()
    hm = out / "hm"
    code, lines = run(["mil", "heatmap", m, "--model", model, "--out", hm, "--quiet"], capsys, tmp_path, out)
    assert code == 3 and lines[-1].startswith("medwss mil heatmap: 3 done, 1 failed")


def bad_files(folder: Path) -> dict[str, Path]:
    """Seeded bad files: empty, random bytes, a pickle with a payload, a folder, UTF-8 garbage."""
    rng = np.random.default_rng(SEED)
    folder.mkdir(exist_ok=True)
    marker = folder / "PWNED"

    class Payload:
        def __reduce__(self):  # noqa: ANN204
            return (os.makedirs, (str(marker),))

    files = {"empty": b"", "random": rng.bytes(int(rng.integers(50, 500))), "pickle": pickle.dumps(Payload())}
    files["text"] = "".join(rng.choice(list("ab,:\n{}[]&*!"), 200)).encode()
    out = {}
    for name, data in files.items():
        out[name] = folder / f"{name}.bin"
        out[name].write_bytes(data)
    out["folder"] = folder / "dir.pt"
    out["folder"].mkdir(exist_ok=True)
    return out


def test_bad_model_files_are_one_line_job_errors(root, tmp_path, capsys):
    m = _bag_manifest(root / "m.csv", _bags(root, 2))
    out = root / "out"
    for name, bad in bad_files(root / "bad").items():
        code, lines = run(["mil", "predict", m, "--model", bad, "--out", out / "p.csv"], capsys, tmp_path, out)
        assert code == 2, name
        one_line_naming(lines, bad.name)
    assert not (root / "bad" / "PWNED").exists()  # the pickle payload never ran


def test_bad_config_files_and_manifests(root, tmp_path, capsys):
    m = _bag_manifest(root / "m.csv", _bags(root, 2))
    out = root / "out"
    configs = bad_files(root / "cfg")
    del configs["empty"]  # an empty YAML file is a config with no settings
    bomb = root / "bomb.yaml"
    bomb.write_text('a: &a ["x","x","x","x","x","x","x","x","x"]\n' + "".join(
        f"{c}: &{c} [{','.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    ) + "aggregator_kwargs: {k: *i}\n")  # fmt: skip
    configs["alias_bomb"] = bomb
    unknown = root / "unknown.yaml"
    unknown.write_text("aggregator: abmil\naggregator_kwargs: {bogus: 1}\nepochs: 1\n")
    for name, cfg in configs.items():
        argv = ["mil", "train", m, "--out", out, "--config", cfg, "--quiet"]
        code, lines = run(argv, capsys, tmp_path, out)
        assert code == 2, name
        one_line_naming(lines, cfg.name)
    code, lines = run(["mil", "train", m, "--out", out, "--config", unknown, "--quiet"], capsys, tmp_path, out)
    assert code == 2 and len(lines) == 1 and "bogus" in lines[0]
    rng = np.random.default_rng(SEED)
    for label in (-1, int(rng.integers(3, 9))):  # labels outside the task
        odd = root / "odd.csv"
        odd.write_text(m.read_text().replace(",1,", f",{label},"))
        code, lines = run(["mil", "train", odd, "--out", out, "--quiet"], capsys, tmp_path, out)
        assert code == 2
        one_line_naming(lines, "odd.csv")
    for name, bad in bad_files(root / "man").items():
        code, lines = run(["tile", bad, "--out", out, "--quiet"], capsys, tmp_path, out)
        assert code == 2, name
        one_line_naming(lines, bad.name)
    existing = root / "file.txt"
    existing.write_text("x")
    one = manifest(root / "v.csv", [("ok", volume(root / "v.nii.gz"))])
    code, lines = run(["tile", one, "--out", existing], capsys, tmp_path, existing)
    assert code == 2
    one_line_naming(lines, "file.txt")


def test_evaluate_refuses_nan_predictions_and_writes_strict_json(root, tmp_path, capsys):
    mask = root / "mask.nii.gz"
    nib.save(nib.Nifti1Image((np.arange(64).reshape(4, 4, 4) % 3 == 0).astype(np.uint8), np.eye(4)), str(mask))
    preds = root / "preds"
    preds.mkdir()
    rng = np.random.default_rng(SEED)
    for cid, arr in (("good", rng.random((4, 4, 4))), ("allnan", np.full((4, 4, 4), np.nan))):
        nib.save(nib.Nifti1Image(arr.astype(np.float32), np.eye(4)), str(preds / f"{cid}.nii.gz"))
    some = rng.random((4, 4, 4)).astype(np.float32)
    some[0, 0, 0] = np.inf
    nib.save(nib.Nifti1Image(some, np.eye(4)), str(preds / "somenan.nii.gz"))
    m = manifest(root / "m.csv", [("good", mask), ("allnan", mask), ("somenan", mask)], extra=str(mask))
    out = root / "out"
    argv = ["evaluate", m, "--predictions", preds, "--out", out, "--n-boot", "5", "--quiet"]
    code, lines = run(argv, capsys, tmp_path, out)
    assert code == 3 and lines[-1] == f"medwss evaluate: 1 done, 2 failed; see {out / 'failures.csv'}"
    rows = {r["case_id"]: r["message"] for r in read_failures(out / "failures.csv")}
    assert "allnan.nii.gz" in rows["allnan"] and "64 of 64 values are NaN" in rows["allnan"]
    assert "somenan.nii.gz" in rows["somenan"]

    def strict(name: str) -> None:
        raise AssertionError(f"bare {name} in JSON")

    for f in out.glob("*.json"):
        json.loads(f.read_text(), parse_constant=strict)
