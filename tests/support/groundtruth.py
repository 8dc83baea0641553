"""Requests for the Ground Truth stand-in as the labeling state machine makes them, and manifests in S3."""

from __future__ import annotations


def job_request(env, name, manifest_uri, **over):
    request = {
        "LabelingJobName": name,
        "LabelAttributeName": "boxes",
        "InputConfig": {"DataSource": {"S3DataSource": {"ManifestS3Uri": manifest_uri}}},
        "OutputConfig": {"S3OutputPath": f"s3://{env.artifacts}/standin-tests/output/"},
        "RoleArn": "arn:aws:iam::123456789012:role/loupe-sagemaker",
        "HumanTaskConfig": {
            "WorkteamArn": "arn:aws:sagemaker:us-east-1:123456789012:workteam/private-crowd/inspectors",
            "UiConfig": {"UiTemplateS3Uri": f"s3://{env.artifacts}/labeling/ui/bounding-box.liquid.html"},
            "PreHumanTaskLambdaArn": "arn:aws:lambda:us-east-1:432418664414:function:PRE-BoundingBox",
            "TaskTitle": "t",
            "TaskDescription": "d",
            "NumberOfHumanWorkersPerDataObject": 1,
            "TaskTimeLimitInSeconds": 300,
            "AnnotationConsolidationConfig": {
                "AnnotationConsolidationLambdaArn": "arn:aws:lambda:us-east-1:432418664414:function:ACS-BoundingBox"
            },
        },
    }
    request.update(over)
    return request


def put_manifest(env, key, lines):
    env.s3.put_object(Bucket=env.artifacts, Key=key, Body="".join(line + "\n" for line in lines).encode())
    return f"s3://{env.artifacts}/{key}"
