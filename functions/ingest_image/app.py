"""Handler for ingest_image (declared by the foundation; its behaviour is built by the issue that owns it)."""

from aws_lambda_powertools import Logger

logger = Logger()


@logger.inject_lambda_context
def lambda_handler(event, context):
    logger.warning("handler not built yet", extra={"function": "ingest_image"})
    raise RuntimeError("ingest_image is declared in template.yaml but its behaviour has not been built yet")
