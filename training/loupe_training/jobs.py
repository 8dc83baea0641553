"""The pipeline's steps as functions: SageMaker entry scripts, the local stand-in and the CLI call these.

- ``prepare_job``: dataset version -> prepared dataset (+ warm-start weights folder)
- ``train_job``: prepared dataset (+ weights) -> model dir: best.pt, model.onnx, model_int8.onnx (candidate),
  train_summary.json
- ``evaluate_job``: model dir + prepared dataset -> evaluation.json (model-quality metrics), gate.json,
  evaluation.png, and the edge package (model.tar.gz: model.onnx, model_int8.onnx if kept, model_card.json)
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from loupe import recipe_values
from loupe.safe_paths import confined, extract_tar
from loupe_training import calibrate
from loupe_training import diagnosis as dg
from loupe_training import evaluate as ev
from loupe_training import export as ex
from loupe_training import spread as sp
from loupe_training.prepare import Prepared, download_s3_prefix, load_prepared, prepare
from loupe_training.train import HyperParams, TrainingError, find_weights, train

Log = Callable[[str], None]
WEIGHTS_MARKER = "NO_WEIGHTS"
# the edge component's default confThreshold (edge_component/inference/recipe.yaml): sample pictures show what
# a device would report
DEPLOYED_CONF_THRESHOLD = 0.25


def code_version() -> str:
    """The code's version: $LOUPE_CODE_VERSION, a CODE_VERSION file shipped with the code, or git."""
    if os.environ.get("LOUPE_CODE_VERSION"):
        return os.environ["LOUPE_CODE_VERSION"]
    shipped = Path(__file__).resolve().parent.parent / "CODE_VERSION"
    if shipped.is_file():
        return shipped.read_text().strip()
    try:
        out = subprocess.run(
            ["git", "-C", str(Path(__file__).resolve().parent), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if out.returncode == 0 and out.stdout.strip():
            return "git-" + out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return "unknown"


# --- prepare ------------------------------------------------------------------------------------------------


def fetch_weights(source: str, dest: Path, s3: Any = None, log: Log = print, expected_sha256: str = "") -> Path | None:
    """Put warm-start weights (an S3 object/prefix holding a .pt or a model.tar.gz with one) into ``dest``.

    With ``expected_sha256`` (the champion's, from its model card) weights with another digest are refused
    (TrainingError) before anything could unpickle them: a .pt is a pickle, and loading one runs its code.
    """
    dest.mkdir(parents=True, exist_ok=True)
    if not source or source.lower() == "none":
        (dest / WEIGHTS_MARKER).write_text("train from the model yaml\n")
        return None
    with tempfile.TemporaryDirectory(prefix="loupe-weights-") as tmp:
        got = Path(tmp)
        if source.startswith("s3://"):
            if source.endswith((".pt", ".tar.gz")):
                bucket, _, key = source[5:].partition("/")
                if s3 is None:
                    import boto3

                    s3 = boto3.client("s3")
                s3.download_file(bucket, key, str(confined(got, PurePosixPath(key).name, key=key)))
            else:
                download_s3_prefix(source, got, s3=s3)
        else:
            src = Path(source)
            if src.is_dir():
                shutil.copytree(src, got, dirs_exist_ok=True)
            else:
                shutil.copyfile(src, got / src.name)
        for archive in list(got.rglob("*.tar.gz")):
            extract_tar(archive, archive.parent / "extracted")
        weights = find_weights(got)
        if weights is None:
            raise TrainingError(f"no .pt weights found in {source}")
        if expected_sha256:
            digest = ex.sha256_file(weights)
            if digest != expected_sha256:
                raise TrainingError(
                    f"warm-start weights {weights.name} from {source} have sha256 {digest}, not the {expected_sha256} "
                    "of the champion's model card: refusing to load them (the object changed after registration)"
                )
        shutil.copyfile(weights, dest / "weights.pt")
    verified = f", sha256 {expected_sha256[:12]} verified against the model card" if expected_sha256 else ""
    log(f"warm-start weights from {source}{verified}")
    return dest / "weights.pt"


def prepare_job(
    source: str | Path,
    out_dir: Path,
    weights_out: Path | None = None,
    warm_start: str = "",
    s3: Any = None,
    log: Log = print,
    weights_sha256: str = "",
) -> Prepared:
    prepared = prepare(source, out_dir, s3=s3)
    counts = prepared.manifest["counts"]
    log(
        f"prepared dataset v{prepared.manifest.get('version')} "
        f"digest {prepared.manifest.get('digest', '')[:12]}: "
        f"train/val/test {counts.get('train')}/{counts.get('val')}/{counts.get('test')} images"
    )
    if weights_out is not None:
        fetch_weights(warm_start, weights_out, s3=s3, log=log, expected_sha256=weights_sha256)
    return prepared


# --- train --------------------------------------------------------------------------------------------------


def train_job(
    prepared_dir: Path,
    model_dir: Path,
    hps: HyperParams,
    weights: Path | None = None,
    work_dir: Path | None = None,
    log: Log = print,
    progress_file: Path | None = None,
    checkpoint_dir: Path | None = None,
) -> dict[str, Any]:
    prepared = load_prepared(prepared_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    work = work_dir or Path(tempfile.mkdtemp(prefix="loupe-train-"))
    result = train(
        prepared.root, work, hps, weights=weights, log=log, progress_file=progress_file, checkpoint_dir=checkpoint_dir
    )
    shutil.copyfile(result.weights, model_dir / "best.pt")
    fp32 = ex.export_onnx(result.weights, model_dir / "model.onnx", hps.imgsz)
    size_mb = fp32.stat().st_size / 1e6
    log(f"exported {fp32.name} ({size_mb:.1f} MB, opset {ex.OPSET}, {hps.imgsz}x{hps.imgsz})")
    calib = ex.calibration_set(prepared.split_images("train"))
    int8 = ex.quantize_int8(fp32, model_dir / "model_int8.onnx", calib, hps.imgsz)
    size_mb = int8.stat().st_size / 1e6
    log(f"quantized {int8.name} ({size_mb:.1f} MB, calibrated on {len(calib)} training images)")
    summary: dict[str, Any] = {
        "hyperparameters": hps.as_dict(),
        "warm_start": bool(find_weights(weights)) if weights else False,
        "imgsz": hps.imgsz,
        "epochs_run": result.epochs_run,
        "train_seconds": round(result.seconds, 1),
        "val_metrics": result.val_metrics,
        "history": result.history,
        "dataset": {"version": prepared.manifest.get("version"), "digest": prepared.manifest.get("digest")},
        "calibration_images": len(calib),
        "code_version": code_version(),
        "stopping": result.stopping,
        "train_split": dg.train_split_size(prepared.root),
    }
    summary["diagnosis"] = dg.diagnose(summary, summary["train_split"])
    log(f"training diagnosis: {summary['diagnosis']['text']}")
    ev.write_json(model_dir / "train_summary.json", summary)
    if progress_file:
        final = {
            "status": "trained",
            "epoch": result.epochs_run,
            "epochs": hps.epochs,
            "history": result.history,
            "train_seconds": summary["train_seconds"],
        }
        Path(progress_file).write_text(json.dumps(final))
    return summary


# --- evaluate -----------------------------------------------------------------------------------------------


def unpack_model_dir(path: Path, dest: Path) -> Path:
    """A training output as a folder: ``path`` itself, or the model.tar.gz found in it, extracted."""
    if path.is_dir() and (path / "model.onnx").is_file():
        return path
    archives = [path] if path.is_file() else sorted(path.rglob("*.tar.gz"))
    if not archives:
        raise FileNotFoundError(f"{path}: no model.onnx and no model.tar.gz")
    extract_tar(archives[0], dest)
    if not (dest / "model.onnx").is_file():
        raise FileNotFoundError(f"{archives[0]}: no model.onnx inside")
    return dest


def approved_packages(sagemaker: Any, group: str) -> list[dict[str, Any]]:
    """The summaries of ``group``'s Approved model packages, newest first (the first is the champion)."""
    resp = sagemaker.list_model_packages(
        ModelPackageGroupName=group,
        ModelApprovalStatus="Approved",
        SortBy="CreationTime",
        SortOrder="Descending",
        MaxResults=20,
    )
    approved = [s for s in resp.get("ModelPackageSummaryList", []) if s.get("ModelApprovalStatus") == "Approved"]
    approved.sort(key=lambda s: s.get("CreationTime") or 0, reverse=True)
    return approved


def find_champion(sagemaker: Any, s3: Any, group: str, dest: Path, log: Log = print) -> dict[str, Any] | None:
    """The latest Approved package of ``group`` with its model.onnx downloaded to ``dest``; None if none."""
    try:
        summaries = approved_packages(sagemaker, group)
    except Exception as exc:  # noqa: BLE001 - a missing group means "no champion yet"
        if "ResourceNotFound" in str(exc) or "does not exist" in str(exc):
            return None
        raise
    if not summaries:
        return None
    arn = summaries[0]["ModelPackageArn"]
    desc = sagemaker.describe_model_package(ModelPackageName=arn)
    url = desc["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
    bucket, _, key = url[5:].partition("/")
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / "champion.tar.gz"
    s3.download_file(bucket, key, str(archive))
    extract_tar(archive, dest / "model")
    log(f"champion: {arn} ({url})")
    return {"arn": arn, "model": dest / "model" / "model.onnx", "model_data_url": url}


@dataclass
class ChampionWeights:
    """The warm-start weights of the champion: where they are and the digest its model card gives them.

    ``sha256`` is empty when the digest cannot be trusted or is absent (``reason`` says why): the champion is then
    not used as a starting point.
    """

    arn: str
    uri: str
    sha256: str = ""
    reason: str = ""


def _card_of(s3: Any, desc: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The model card in a package's model.tar.gz, checked against the package's ``model_card_sha256``."""
    want = (desc.get("CustomerMetadataProperties") or {}).get("model_card_sha256", "")
    if not want:
        return None, "its package metadata has no model_card_sha256"
    url = desc["InferenceSpecification"]["Containers"][0]["ModelDataUrl"]
    bucket, _, key = url[5:].partition("/")
    data = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            member = tar.extractfile("model_card.json")
            raw = member.read() if member else b""
    except (tarfile.TarError, KeyError) as exc:
        return None, f"no model_card.json in {url} ({exc})"
    if hashlib.sha256(raw).hexdigest() != want:
        raise TrainingError(
            f"the model card in {url} does not match the package's model_card_sha256 {want}: "
            "refusing the champion's weights (the package changed after registration)"
        )
    return json.loads(raw), ""


def champion_weights(sagemaker: Any, s3: Any, group: str, log: Log = print) -> ChampionWeights | None:
    """The training artifact (best.pt inside) of the latest Approved package that names one, with the digest of
    its weights from the package's model card; None when the group has no such package.

    The digest chain: the package's metadata (written by the pipeline's Register step, changed only through
    SageMaker) holds the model card's sha256; the card holds the weights' sha256. A card that lacks the digest
    (a package registered before cards carried it) gives ``sha256 == ""``; a card or weights that do not match
    raise TrainingError.
    """
    try:
        approved = approved_packages(sagemaker, group)
    except Exception as exc:  # noqa: BLE001 - no group yet: no champion
        log(f"no champion ({exc})")
        return None
    for summary in approved:
        arn = summary["ModelPackageArn"]
        desc = sagemaker.describe_model_package(ModelPackageName=arn)
        uri = (desc.get("CustomerMetadataProperties") or {}).get("weights_uri", "")
        if not uri:
            continue
        card, reason = _card_of(s3, desc)
        weights = (card or {}).get("weights") or {}
        if card is not None and weights.get("uri") not in (None, "", uri):
            reason = f"its model card describes the weights {weights.get('uri')}, not {uri}"
        elif card is not None and not weights.get("sha256"):
            reason = "its model card has no weights digest (registered before cards carried one)"
        if reason:
            return ChampionWeights(arn, uri, reason=reason)
        return ChampionWeights(arn, uri, sha256=str(weights["sha256"]))
    return None


def evaluate_job(
    model_path: Path,
    prepared_dir: Path,
    eval_out: Path,
    package_out: Path,
    champion_model: Path | None = None,
    champion_arn: str = "",
    training_artifact_uri: str = "",
    log: Log = print,
) -> dict[str, Any]:
    prepared = load_prepared(prepared_dir)
    eval_out.mkdir(parents=True, exist_ok=True)
    package_out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="loupe-evaljob-") as tmp:
        work = Path(tmp)
        model_dir = unpack_model_dir(model_path, work / "model")
        summary_path = model_dir / "train_summary.json"
        summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
        fp32 = model_dir / "model.onnx"
        fp32_stats: list[dict[str, Any]] = []
        result = ev.score(fp32, prepared, "test", work / "fp32", image_stats=fp32_stats)
        result["spread"] = sp.bootstrap(fp32_stats)
        result["latency_ms"] = ev.onnx_latency_ms(fp32)
        log(
            f"test split ({result['images']} images): mAP50={result['map50']:.4f} "
            f"mAP50-95={result['map50_95']:.4f} P={result['precision']:.4f} R={result['recall']:.4f} "
            f"latency={result['latency_ms']['median']:.1f}ms; 90% interval of mAP50 over "
            f"{sp.BOOTSTRAP_SAMPLES} resamples of these images {result['spread']['map50']['ci90']}"
        )
        int8_info: dict[str, Any] = {"kept": False, "reason": "no INT8 candidate"}
        int8_path = model_dir / "model_int8.onnx"
        if int8_path.is_file():
            int8_result = ev.score(int8_path, prepared, "test", work / "int8")
            int8_lat = ev.onnx_latency_ms(int8_path)
            kept = ex.keep_int8(result["map50"], int8_result["map50"])
            int8_info = {
                "kept": kept,
                "map50": int8_result["map50"],
                "map50_95": int8_result["map50_95"],
                "latency_ms": int8_lat,
                "bytes": int8_path.stat().st_size,
                "reason": (
                    f"test mAP50 {int8_result['map50']:.4f} vs FP32 {result['map50']:.4f} "
                    f"(allowed drop {ex.INT8_MAX_MAP50_DROP})"
                ),
            }
            log(
                f"INT8: mAP50={int8_result['map50']:.4f} latency={int8_lat['median']:.1f}ms -> "
                f"{'kept' if kept else 'dropped'} ({int8_info['reason']})"
            )
        champion: dict[str, Any] = {"present": False, "map50": 0.0}
        comparison: dict[str, Any] | None = None
        if champion_model is not None:
            champ_stats: list[dict[str, Any]] = []
            champ = ev.score(champion_model, prepared, "test", work / "champion", image_stats=champ_stats)
            champion = {"present": True, "arn": champion_arn, "map50": champ["map50"], "map50_95": champ["map50_95"]}
            comparison = sp.paired_comparison(fp32_stats, champ_stats)
            log(
                f"champion on the same test split: mAP50={champ['map50']:.4f}; challenger - champion "
                f"{comparison['difference']:+.4f}, 90% interval {comparison['ci90']}, better in "
                f"{comparison['p_challenger_better']:.0%} of resamples; the gate's bar {comparison['champion_bar']:.4f}"
            )
        samples = ev.write_samples(prepared, eval_out, fp32, champion_model, conf=DEPLOYED_CONF_THRESHOLD)
        ev.plot_evaluation(
            result, eval_out / "evaluation.png", f"dataset v{prepared.manifest.get('version')} test split"
        )
        metrics = ev.model_quality_metrics(result, result["latency_ms"])
        ev.write_json(eval_out / "evaluation.json", metrics)
        details = {"fp32": result, "int8": int8_info, "champion": champion, "samples": samples}
        if comparison is not None:
            details["comparison"] = comparison
        ev.write_json(eval_out / "details.json", details)
        # package: model.onnx, model_int8.onnx (if kept), model_card.json
        pkg_dir = work / "package"
        pkg_dir.mkdir()
        shutil.copyfile(fp32, pkg_dir / "model.onnx")
        artifacts = {"model.onnx": pkg_dir / "model.onnx"}
        if int8_info["kept"]:
            shutil.copyfile(int8_path, pkg_dir / "model_int8.onnx")
            artifacts["model_int8.onnx"] = pkg_dir / "model_int8.onnx"
        card_metrics = {
            k: result[k]
            for k in (
                "split",
                "images",
                "map50",
                "map50_95",
                "spread",
                "precision",
                "recall",
                "per_class",
                "latency_ms",
            )
        }
        card = ex.model_card(
            manifest=prepared.manifest,
            hyperparameters=summary.get("hyperparameters", {}),
            metrics=card_metrics,
            imgsz=ev.onnx_input_size(fp32),
            artifacts=artifacts,
            code_version=summary.get("code_version") or code_version(),
            int8=int8_info,
            extra={
                "training": {k: summary.get(k) for k in ("epochs_run", "train_seconds", "warm_start")},
                "weights_uri": training_artifact_uri,
                # what a warm start from this model will check before unpickling best.pt (champion_weights)
                **_weights_entry(model_dir, training_artifact_uri),
                # the frames its devices send back for labeling (loupe.uncertainty); the edge deployment sets it
                "uncertainty_band": calibrate.uncertainty_band(fp32, prepared, work / "calibrate", log=log),
            },
        )
        card_path = ex.write_card(pkg_dir / "model_card.json", card)
        files = [*artifacts.values(), card_path]
        package = ex.write_package(package_out, files)
        shutil.copyfile(card_path, eval_out / "model_card.json")
    gate = {
        "map50": result["map50"],
        "map50_95": result["map50_95"],
        "champion_map50": champion["map50"],
        # what the challenger's mAP50 must reach against the champion: the champion's score corrected by the paired
        # spread (loupe_training.spread: non-inferiority within GATE_MARGIN); 0 when there is no champion
        "champion_bar": comparison["champion_bar"] if comparison else 0.0,
        "champion_bar_text": f"{comparison['champion_bar']:.5f}" if comparison else "0.00000",
        "map50_ci90_text": "{:.5f}-{:.5f}".format(*result["spread"]["map50"]["ci90"]),
        "map50_text": f"{result['map50']:.5f}",
        "champion_map50_text": f"{champion['map50']:.5f}",
        "has_champion": champion["present"],
        "champion_arn": champion.get("arn", ""),
        "dataset_version": str(prepared.manifest.get("version")),
        "dataset_digest": prepared.manifest.get("digest", ""),
        "model_sha256": card["artifacts"]["model.onnx"]["sha256"],
        # SageMaker refuses empty metadata values: "none" says the INT8 variant was not kept
        "model_int8_sha256": card["artifacts"].get("model_int8.onnx", {}).get("sha256") or "none",
        "model_card_sha256": ex.sha256_file(eval_out / "model_card.json"),
        "package_sha256": ex.sha256_file(package),
        "int8_kept": str(int8_info["kept"]).lower(),
        "code_version": card["code_version"],
        "weights_uri": training_artifact_uri,
        # why the model may be weak, in words (loupe_training.diagnosis): the Gate's refusal message carries it
        "diagnosis_text": _diagnosis(summary, prepared)["text"],
        # the same in a form SageMaker takes as a package metadata value (the Register steps' training_diagnosis)
        "diagnosis_short": _diagnosis(summary, prepared)["short"],
    }
    check_registration(gate)
    ev.write_json(eval_out / "gate.json", gate)
    return {"result": result, "int8": int8_info, "champion": champion, "gate": gate, "card": card, "package": package}


def _diagnosis(summary: dict[str, Any], prepared: Prepared) -> dict[str, str]:
    """The training's diagnosis (train_summary.json), or one made here for a model trained before it had one."""
    found = summary.get("diagnosis") or {}
    if found.get("text") and found.get("short"):
        return {"text": str(found["text"]), "short": str(found["short"])}
    if not summary:
        text = "no training record (train_summary.json) came with the model: nothing to say about its training"
        return {"text": text, "short": dg.metadata_value(text)}
    made = dg.diagnose(summary, dg.train_split_size(prepared.root))
    return {"text": str(made["text"]), "short": str(made["short"])}


def _weights_entry(model_dir: Path, uri: str) -> dict[str, Any]:
    best = model_dir / "best.pt"
    if not best.is_file():
        return {}
    return {"weights": {"uri": uri, "file": best.name, "sha256": ex.sha256_file(best), "bytes": best.stat().st_size}}


# gate.json's values the pipeline's Register step copies into CustomerMetadataProperties and that reach a recipe
REGISTERED_DIGESTS = ("package_sha256", "model_sha256", "model_int8_sha256", "model_card_sha256")


def check_registration(gate: dict[str, Any]) -> None:
    """Refuse to hand the Register step a value off its whitelist (:mod:`loupe.recipe_values`): without gate.json the
    Gate step fails and nothing is registered. The edge deployment checks the same values again before it builds a
    recipe, for packages registered (or changed) some other way."""
    recipe_values.check_package_metadata({k: gate.get(k) for k in REGISTERED_DIGESTS})


def gate_decision(gate: dict[str, Any], threshold: float) -> tuple[bool, str]:
    """The pipeline's condition as a function (the local stand-in and tests; the cloud uses the JSON)."""
    map50 = float(gate["map50"])
    training = f"; training: {gate['diagnosis_text']}" if gate.get("diagnosis_text") else ""
    if map50 < threshold:
        return False, f"test mAP50 {map50:.4f} is below the threshold {threshold:.4f}{training}"
    bar = float(gate.get("champion_bar", gate.get("champion_map50", 0.0)))
    if gate.get("has_champion") and map50 < bar:
        return False, (
            f"test mAP50 {map50:.4f} is below {bar:.4f}, the bar set by the champion's "
            f"{float(gate['champion_map50']):.4f} on the same test images and the spread of the difference{training}"
        )
    return True, f"test mAP50 {map50:.4f} passes (threshold {threshold:.4f})"
