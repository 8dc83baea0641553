"""Labeling: the trigger's claim and every task of the labeling state machine, one module per concern.

- ``config``: the configuration of a run, the attribute names and the errors the state machine matches.
- ``trigger``: which event asks for labeling, and the claim + execution start.
- ``groundtruth``: Ground Truth job names, human task configuration, job creation and completed output.
- ``labeling_job``: the input manifest of a run and its bounding-box job.
- ``collection``: the labeling job's output read back into the ledger.
- ``verification``: the optional verification job and its verdicts.
- ``dataset``: dataset version N+1 from every labeled image, and its hand-over to training.
- ``features``: Feature Store records.
- ``release``: the failure path and the sweep of stranded claims.
- ``callback``: a Ground Truth job's state change resumes the execution waiting on its task token
  (``LabelingService=GroundTruth`` only).
- ``tasks``: the labeling state machine's task table (``loupe.tasks`` envelope).

Loupe's own workforce (issue 20; the console API's ``/labeling/tasks`` and ``/review`` routes):

- ``answers``: a labeler's or reviewer's answer, validated (HTTP status + message on refusal).
- ``consolidation``: several labelers' boxes -> one label, agreement per image, review or not (IoU 0.5).
- ``task_store``: the one table of jobs, images, leases and answers (``LabelingTasksTable``).
- ``workforce``: leases to labelers and reviewers, answers, declines and reviews.
- ``workforce_jobs``: a job's creation with its task token, settling images, expiry, the output manifest and
  SendTaskSuccess/SendTaskFailure.
- ``app_job``: a labeling run's job in the app (``LabelingService=Loupe``): created from the run with its task token,
  expired when the run's wait ends, cancelled by a failed run's release.

Domain code only: every function takes the AWS clients it uses (``loupe.aws_clients``) and a
:class:`loupe.ledger.Ledger`.
"""
