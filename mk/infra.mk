# Infrastructure checks (filled in by the infra work): sam validate --lint, cfn-lint (+serverless rules),
# asl-validator, checkov, sam build.
.PHONY: tools lint-infra
tools:
	@true
lint-infra:
	@true
