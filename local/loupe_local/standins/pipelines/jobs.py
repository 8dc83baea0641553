"""Runs a pipeline's Processing and Training jobs as local subprocesses, under SageMaker's container contract.

- Processing steps whose container runs ``job.py`` and Training steps (``sagemaker_program``) run the same entry
  points from ``training/`` as subprocesses: processing inputs/outputs under ``LOUPE_OPT_ML`` (= ``/opt/ml`` moved
  into the state dir), ``SM_CHANNEL_*``, ``SM_MODEL_DIR``, ``SM_HPS``, ``SM_OUTPUT_DATA_DIR``; inputs are downloaded
  from and outputs uploaded to the local S3 through boto3, the model dir is tarred to
  ``<S3OutputPath>/<job>/output/model.tar.gz`` like SageMaker does;
- a Training step's ``CheckpointConfig`` gets SageMaker's checkpoint contract: the S3 prefix is copied into the
  local folder before the algorithm starts and what the algorithm writes there is uploaded while it runs; a test can
  reclaim the "spot instance" (:meth:`JobRunner.interrupt_training`): the job's process is killed, its folder is
  replaced by what S3 holds, and the job restarts, as a managed spot job does after an interruption.

Step logs go to ``<execution root>/<step>.log``; training progress is written to ``progress.json`` there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError

from loupe.safe_paths import UnsafeKeyError, confined, download_prefix
from loupe_local.standins.base import StandInHost, authorize_as, role_client, role_environment
from loupe_local.standins.pipelines.interpreter import (
    Execution,
    StepFailed,
    StepRecord,
    invoke_failure,
    validate_training_request,
)

# Checkpoints (a few MB to tens of MB) go up as one PUT each, from this thread: a multipart upload with s3transfer's
# worker threads makes many concurrent requests to the in-process local S3 for no gain on loopback.
_ONE_PUT = TransferConfig(multipart_threshold=256 * 1024 * 1024, use_threads=False)

SPOT_INTERRUPTED = -9  # returncode of a job process the local "spot reclaim" killed


class JobRunner:
    """One job at a time (the stand-in's worker runs executions one by one); ``terminate`` stops the running one."""

    def __init__(self, host: StandInHost, training_dir: Path) -> None:
        self.host = host
        self.training_dir = training_dir
        self._proc: subprocess.Popen[bytes] | None = None
        self._interrupt: Callable[[Path], bool] | None = None  # armed spot reclaim: fires when it returns True
        # the running job's role (its pipeline's RoleArn): SageMaker reads the job's inputs and writes its outputs
        # with it, and the job's container gets its credentials (API_CreateTrainingJob.html, RoleArn: "read input
        # data from an S3 bucket ... write model artifacts to an S3 bucket"; API_CreatePipeline.html, RoleArn: "the
        # role used by the pipeline to access and create resources")
        self._role: str | None = None

    # ------------------------------------------------------------------ test seams (what AWS does to a job)
    def interrupt_training(self, when: Callable[[Path], bool] | None = None) -> None:
        """Reclaim the spot instance of the next (or running) training job once ``when(checkpoint folder)`` holds.

        The job's process is killed (a reclaim gives no chance to finish the epoch), its checkpoint folder is
        uploaded as SageMaker's continuous sync left it, the instance's disk is gone (the folder is emptied and
        refilled from the checkpoint S3 prefix) and the job starts again, like a managed spot job after an
        interruption. One reclaim per call.
        """
        self._interrupt = when or (lambda _folder: True)

    @property
    def interrupt_pending(self) -> bool:
        """An armed reclaim has not fired yet."""
        return self._interrupt is not None

    def cancel_interrupt(self) -> None:
        self._interrupt = None

    def terminate(self, wait: float | None = None) -> None:
        """Stop the running job's process (StopPipelineExecution; ``wait`` seconds before killing it)."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        if wait is not None:
            try:
                proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                proc.kill()

    # ------------------------------------------------------------------ jobs
    def processing(self, ex: Execution, step: dict[str, Any], record: StepRecord, args: dict[str, Any]) -> None:
        app = args["AppSpecification"]
        entry = " ".join(app.get("ContainerEntrypoint", []))
        if "job.py" not in entry:
            raise StepFailed(f"processing step {record.name}: only Loupe's job.py runs locally")
        self._role = ex.role_arn
        root = ex.root / record.name / "opt" / "ml"
        job_name = f"pipelines-{ex.execution_id}-{record.name}".lower()
        record.metadata = {"ProcessingJob": {"Arn": self._arn(f"processing-job/{job_name}")}}
        self._may_create(ex, "CreateProcessingJob", {**args, "ProcessingJobName": job_name})

        def local(path: str) -> Path:
            if not path.startswith("/opt/ml/"):
                raise StepFailed(f"processing path {path} is outside /opt/ml")
            return _confined(root, path[len("/opt/ml/") :].rstrip("/"), f"processing path {path}")

        for inp in args.get("ProcessingInputs", []):
            s3in = inp["S3Input"]
            self._download(s3in["S3Uri"], local(s3in["LocalPath"]), optional=inp.get("InputName") == "code")
        outputs = args.get("ProcessingOutputConfig", {}).get("Outputs", [])
        for out in outputs:
            local(out["S3Output"]["LocalPath"]).mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, str(self.training_dir / "job.py"), *[str(a) for a in app.get("ContainerArguments", [])]]
        env = {k: str(v) for k, v in (args.get("Environment") or {}).items()}
        env["LOUPE_OPT_ML"] = str(root)
        self._subprocess(ex, record.name, cmd, env)
        props: dict[str, Any] = {"ProcessingOutputConfig": {"Outputs": {}}, "ProcessingJobStatus": "Completed"}
        for out in outputs:
            s3out = out["S3Output"]
            self._upload(local(s3out["LocalPath"]), s3out["S3Uri"])
            props["ProcessingOutputConfig"]["Outputs"][out["OutputName"]] = {
                "OutputName": out["OutputName"],
                "S3Output": {"S3Uri": s3out["S3Uri"], "LocalPath": s3out["LocalPath"]},
            }
        ex.properties[record.name] = props
        by_output = {o["OutputName"]: local(o["S3Output"]["LocalPath"]) for o in outputs}
        for pf in step.get("PropertyFiles", []):
            path = _confined(by_output[pf["OutputName"]], pf["FilePath"], f"property file {pf['FilePath']}")
            if path.is_file():  # read once here: the interpreter's Std:JsonGet looks into the document
                ex.property_files[f"{record.name}.{pf['PropertyFileName']}"] = json.loads(path.read_text())

    def training(self, ex: Execution, record: StepRecord, args: dict[str, Any]) -> None:
        validate_training_request(args)
        hps = {k: str(v) for k, v in (args.get("HyperParameters") or {}).items()}
        program = hps.get("sagemaker_program")
        if not program or not (self.training_dir / program).is_file():
            raise StepFailed(f"training step {record.name}: entry point {program!r} not found in training/")
        self._role = ex.role_arn
        root = ex.root / record.name / "opt" / "ml"
        job_name = f"pipelines-{ex.execution_id}-{record.name}".lower()
        record.metadata = {"TrainingJob": {"Arn": self._arn(f"training-job/{job_name}")}}
        self._may_create(ex, "CreateTrainingJob", {**args, "TrainingJobName": job_name})
        env = {k: str(v) for k, v in (args.get("Environment") or {}).items()}
        for channel in args.get("InputDataConfig", []):
            name = channel["ChannelName"]
            dest = _confined(root / "input" / "data", name, f"channel {name}")
            self._download(channel["DataSource"]["S3DataSource"]["S3Uri"], dest)
            env[f"SM_CHANNEL_{name.upper()}"] = str(dest)
        model_dir, output_dir = root / "model", root / "output"
        (output_dir / "data").mkdir(parents=True, exist_ok=True)
        model_dir.mkdir(parents=True, exist_ok=True)
        user_hps = {k: v for k, v in hps.items() if not k.startswith("sagemaker_")}
        env.update(
            {
                "SM_MODEL_DIR": str(model_dir),
                "SM_OUTPUT_DIR": str(output_dir),
                "SM_OUTPUT_DATA_DIR": str(output_dir / "data"),
                "SM_HPS": json.dumps(user_hps),
                "SM_CURRENT_HOST": "algo-1",
                "SM_HOSTS": json.dumps(["algo-1"]),
                "SM_TRAINING_ENV": json.dumps({"job_name": job_name, "hyperparameters": user_hps}),
                "LOUPE_PROGRESS_FILE": str(ex.root / "progress.json"),
                **{f"SM_HP_{k.upper()}": v for k, v in user_hps.items()},
                "LOUPE_OPT_ML": str(root),
            }
        )
        checkpoint: dict[str, Any] = args.get("CheckpointConfig") or {}
        local_ckpt: Path | None = None
        sent: dict[str, tuple[int, int]] = {}
        if checkpoint:
            local_path = checkpoint.get("LocalPath") or "/opt/ml/checkpoints"
            if not local_path.startswith("/opt/ml/"):
                raise StepFailed(f"checkpoint path {local_path} is outside /opt/ml")
            local_ckpt = _confined(root, local_path[len("/opt/ml/") :].rstrip("/"), f"checkpoint path {local_path}")
        cmd = [sys.executable, str(self.training_dir / program)]
        log_path = ex.root / f"{record.name}.log"
        started = time.monotonic()
        max_wait = (args.get("StoppingCondition") or {}).get("MaxWaitTimeInSeconds")
        while True:
            if local_ckpt is not None:
                # a (re)started instance begins with what the checkpoint prefix holds, nothing else
                shutil.rmtree(local_ckpt, ignore_errors=True)
                local_ckpt.mkdir(parents=True, exist_ok=True)
                # the prefix as a folder: another execution's id that merely starts with this one is not ours
                got = self._download(checkpoint["S3Uri"].rstrip("/") + "/", local_ckpt, optional=True)
                sent = {
                    p.relative_to(local_ckpt).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
                    for p in local_ckpt.rglob("*")
                    if p.is_file()
                }
                if got:
                    with open(log_path, "ab") as fh:
                        fh.write(f"[local sagemaker] {got} checkpoint file(s) from {checkpoint['S3Uri']}\n".encode())

            def sync(
                folder: Path | None = local_ckpt, sent: dict[str, tuple[int, int]] = sent, final: bool = False
            ) -> None:
                if folder is None:
                    return
                # SageMaker's continuous checkpoint sync is best effort: a failed upload is tried again at the next
                # sync, never a failure of the job (the final sync after the job tries a few times more).
                for attempt in range(3 if final else 1):
                    try:
                        self._sync_up(folder, checkpoint["S3Uri"], sent)
                        return
                    except (BotoCoreError, ClientError, Boto3Error) as exc:  # Boto3Error: S3UploadFailedError
                        with open(ex.root / f"{record.name}.log", "ab") as fh:
                            fh.write(f"[local sagemaker] checkpoint sync attempt failed: {exc}\n".encode())
                        if final and attempt < 2:
                            time.sleep(1.0 + attempt)

            def reclaim(folder: Path | None = local_ckpt) -> bool:
                armed = self._interrupt
                if armed is None or not armed(folder or root):
                    return False
                self._interrupt = None
                return True

            try:
                rc = self._subprocess(ex, record.name, cmd, env, while_running=sync, reclaim=reclaim)
            except StepFailed as exc:
                failure = output_dir / "failure"
                if failure.is_file():
                    raise StepFailed(f"step {record.name} failed: {failure.read_text().strip()}") from exc
                raise
            finally:
                sync(final=True)
            if rc != SPOT_INTERRUPTED:
                break
            # Managed spot lifecycle: Training -> Interrupted -> Starting -> Downloading -> Training, within MaxWait
            # (https://docs.aws.amazon.com/sagemaker/latest/dg/model-managed-spot-training-status.html)
            shutil.rmtree(model_dir, ignore_errors=True)  # the new instance's /opt/ml/model starts empty
            model_dir.mkdir(parents=True)
            with open(log_path, "ab") as fh:
                fh.write(b"[local sagemaker] spot capacity reclaimed: job Interrupted, restarting on a new instance\n")
            if max_wait is not None and time.monotonic() - started > float(max_wait):
                raise StepFailed(f"step {record.name}: training job Stopped: MaxWaitTimeExceeded")
        archive = root / "model.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            for path in sorted(model_dir.iterdir()):
                tar.add(path, arcname=path.name)
        out_uri = f"{args['OutputDataConfig']['S3OutputPath'].rstrip('/')}/{job_name}/output/model.tar.gz"
        bucket, _, key = out_uri[5:].partition("/")
        self._s3().upload_file(str(archive), bucket, key, Config=_ONE_PUT)
        ex.properties[record.name] = {
            "ModelArtifacts": {"S3ModelArtifacts": out_uri},
            "TrainingJobName": job_name,
            "TrainingJobStatus": "Completed",
        }

    # ------------------------------------------------------------------ the process
    def _may_create(self, ex: Execution, operation: str, request: dict[str, Any]) -> None:
        """What SageMaker checks when a pipeline, acting as its ``RoleArn``, creates a step's job: the Create*Job
        action on the job's ARN and ``iam:PassRole`` on the job's own ``RoleArn`` with ``iam:PassedToService =
        sagemaker.amazonaws.com`` (API_CreatePipeline.html, RoleArn: "the role used by the pipeline to access and
        create resources"; API_CreateTrainingJob.html, RoleArn: "To be able to pass this role to SageMaker, the
        caller of this API must have the iam:PassRole permission"). The actions, resources and dependent actions
        come from the Service Authorization data (``iam.requests.resolve``), the check is the gateway's (recorded
        in iam-usage.jsonl). A refusal fails the step before any of its data moves, with the error the step's
        FailureReason carries (``invoke_failure``: "ClientError: Failed to invoke sagemaker:CreateTrainingJob. Error
        Details: User: ... is not authorized to perform: iam:PassRole on resource: ...")."""
        denial = authorize_as(self.host, ex.role_arn, "sagemaker", operation, request)
        if denial is not None:
            raise StepFailed(invoke_failure(operation, denial))

    def _subprocess(
        self,
        ex: Execution,
        name: str,
        cmd: list[str],
        env: dict[str, str],
        while_running: Callable[[], None] | None = None,
        reclaim: Callable[[], bool] | None = None,
    ) -> int:
        """Run a job's process; returns SPOT_INTERRUPTED when ``reclaim()`` said to kill it, raises on failure."""
        log_path = ex.root / f"{name}.log"
        # the container runs with its job's role (the run's key while IAM is off)
        full_env = {**os.environ, **env, **role_environment(self.host, ex.role_arn), "PYTHONUNBUFFERED": "1"}
        interrupted = False
        with open(log_path, "ab") as fh:
            fh.write(f"$ {' '.join(cmd)}\n".encode())
            fh.flush()
            proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=full_env, cwd=str(ex.root))
            self._proc = proc
            try:
                next_sync = 0.0
                while proc.poll() is None:
                    if reclaim is not None and reclaim():
                        proc.kill()
                        proc.wait()
                        interrupted = True
                        break
                    if while_running is not None and time.monotonic() >= next_sync:
                        while_running()
                        next_sync = time.monotonic() + 2.0
                    time.sleep(0.2)
                rc = proc.wait()
            except BaseException:  # the runner itself failed: the job's process must not outlive it
                proc.kill()
                proc.wait()
                raise
            finally:
                self._proc = None
        if interrupted and not ex.stop_requested:
            return SPOT_INTERRUPTED
        if rc != 0:
            raise StepFailed(f"step {name} failed (exit {rc}): {_last_error(log_path)}")
        return 0

    # ------------------------------------------------------------------ S3
    def _download(self, uri: str, dest: Path, optional: bool = False) -> int:
        s3 = self._s3()
        bucket, _, prefix = uri[5:].partition("/")
        try:  # every key is checked before anything is written: one escaping key fails the job, nothing lands
            count = download_prefix(s3, bucket, prefix, dest)
        except UnsafeKeyError as exc:
            raise StepFailed(f"input {uri}: {exc}") from exc
        if count == 0 and not optional:
            raise StepFailed(f"no objects at {uri}")
        return count

    def _upload(self, src: Path, uri: str) -> None:
        s3 = self._s3()
        bucket, _, prefix = uri[5:].partition("/")
        for path in sorted(p for p in src.rglob("*") if p.is_file()):
            key = f"{prefix.rstrip('/')}/{path.relative_to(src).as_posix()}"
            s3.upload_file(str(path), bucket, key, Config=_ONE_PUT)

    def _sync_up(self, src: Path, uri: str, sent: dict[str, tuple[int, int]]) -> None:
        """Upload the files of ``src`` that are new or changed since the last sync (SageMaker's checkpoint sync)."""
        s3 = self._s3()
        bucket, _, prefix = uri[5:].partition("/")
        for path in sorted(p for p in src.rglob("*") if p.is_file() and not p.name.endswith(".tmp")):
            rel = path.relative_to(src).as_posix()
            try:
                st = path.stat()
            except FileNotFoundError:  # replaced while we looked
                continue
            stamp = (st.st_size, st.st_mtime_ns)
            if sent.get(rel) == stamp:
                continue
            # The job may be rewriting the file (last.pt every epoch, in place): upload a snapshot of its bytes, and
            # only one that did not change while it was read — a body read while it changes fails S3's
            # x-amz-content-sha256 check, and a torn checkpoint must not land. A skipped file goes at the next sync.
            try:
                body = path.read_bytes()
                after = path.stat()
            except FileNotFoundError:
                continue
            if (after.st_size, after.st_mtime_ns) != stamp or len(body) != st.st_size:
                continue
            s3.put_object(Bucket=bucket, Key=f"{prefix.rstrip('/')}/{rel}", Body=body)
            sent[rel] = stamp

    def _s3(self) -> Any:
        return role_client(self.host, self._role, "s3")

    def _arn(self, resource: str) -> str:
        return f"arn:aws:sagemaker:{self.host.region}:123456789012:{resource}"


def _confined(root: Path, rel: str, what: str) -> Path:
    """``root / rel`` for a path the request names; a path leaving ``root`` fails the step (UnsafeKeyError's text)."""
    try:
        return confined(root, rel)
    except UnsafeKeyError as exc:
        raise StepFailed(f"{what}: {exc}") from exc


def _last_error(log_path: Path) -> str:
    """The most telling line of a failed step's log (an 'error:' line, else the last one)."""
    try:
        lines = [ln.strip() for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    for line in reversed(lines):
        if "error:" in line.lower():
            return line[-500:]
    return lines[-1][-500:] if lines else "no output"
