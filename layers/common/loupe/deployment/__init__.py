"""Edge deployment: from an approved model package to a verified Greengrass deployment on a thing group.

The modules follow the workflow (``statemachines/edge_deployment.asl.json``, run by ``functions/deployment_tasks``
through :mod:`loupe.deployment.workflow`) and the package events that start it (``functions/model_package_events``
through :mod:`loupe.deployment.routing`):

- ``clients``: the AWS clients the domain takes (``Protocol``s of the calls it makes) and their lazy holder.
- ``errors``: the errors a step refuses with (their ``code`` is what the state machine catches).
- ``packages``: the model package (registry reads) and the resolve step (what to deploy, where).
- ``verification``: the package bytes against their registered digests.
- ``components``: ``com.loupe.model`` built from the verified bytes; the ``com.loupe.inference`` to deploy.
- ``document``: the deployment document, a revision of the thing group's current deployment.
- ``outcomes``: per-device outcomes (deployed *and* serving), from the deployment's IoT job or per device.
- ``store``: :class:`~loupe.deployment.store.DeploymentsStore`, every read and write of the deployments table.
- ``rollout``: one rollout at a time per thing group, and what a rejection goes back to.
- ``records``: the run's record and its SNS text.
- ``routing``: package state changes → workflow runs.
- ``workflow``: the state machine's tasks.

Registered digests (``CustomerMetadataProperties`` of the package, hex SHA-256): ``package_sha256`` (the
``model.tar.gz`` at ``ModelDataUrl``, required), ``model_sha256``, ``model_int8_sha256``, ``model_card_sha256``
(files inside it, checked when present), and ``dataset_version``.

Design notes:
- Digests vouch for a package's bytes, not for what it says. Every value that reaches the ``com.loupe.model`` recipe
  (the card's ``version``, the package ARN, ``ModelDataUrl``, the registered digests) is checked against a whitelist
  (:mod:`loupe.recipe_values`) in the resolve and verify steps, after registration-time checks in training: a
  package that fails is ``PackageInvalid`` (REFUSED, alerted, nothing built or deployed). The recipes give
  configuration to their scripts through ``Setenv`` only (:func:`loupe.greengrass.check_scripts`).
- The verified ``model.tar.gz`` is repacked as a deterministic ZIP (Greengrass' ``Unarchive`` only knows ZIP) and
  uploaded to ``edge/artifacts/com.loupe.model/<version>/model.zip``; the recipe carries that ZIP's digest, so the
  service refuses other bytes at that key and devices verify what they download.
- The ``com.loupe.model`` recipe comes from the template shipped inside the deployed ``com.loupe.inference``
  artifact (``edge_component/model/recipe.yaml``), so the pointer contract and the code reading it travel together.
- One workflow run per status change: the execution name is derived from (package ARN, status, LastModifiedTime),
  so a redelivered event starts nothing; a re-approval after a rejection is a new change and deploys again.
- The thing group's ``CURRENT`` package is what completed on at least one device; ``PENDING`` is the deployment
  still rolling out. Rejecting either goes back to the newest package that ran before and is still Approved.
- Revise, never replace: a thing group has one Greengrass deployment and a new one removes what it lacks, so the
  deployment starts from the group's current one and changes only ``com.loupe.*`` components.
- One rollout at a time per thing group (``TARGET#<group>`` / ``LOCK``, a conditional write that expires); once a
  run holds it, the registry decides: an approval older than the newest Approved package is ``SUPERSEDED``.
- Deployed means serving: a device is ``COMPLETED`` when Greengrass says so *and* its health messages report the
  new model version (``loupe.fleet_serving``); else ``NOT_SERVING`` at the deadline.
- Outcomes come from the deployment's IoT job, paged; per-device results live in the table, not in the state.
"""
