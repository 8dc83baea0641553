"""SageMaker Ground Truth: ``service`` (the labeling-job API, lifecycle, output manifest) over the automatic
``workforce``, the manual ``task_queue`` and ``browser`` (the workers' origin and the input buckets' CORS check)."""
