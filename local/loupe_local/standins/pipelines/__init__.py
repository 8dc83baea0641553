"""SageMaker Pipelines executions: ``service`` (the API and the worker) over the pure ``interpreter`` (order,
references, conditions, retry decisions) and the ``jobs`` runner (subprocesses under the container contract)."""
