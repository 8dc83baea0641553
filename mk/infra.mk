# Infrastructure gates (scripts/lint_infra.sh does the work; it says what is missing and how to get it):
#   make tools       idempotent: .tools/sam (aws-sam-cli), .tools/checkov, .tools/parliament, node_modules (asl-validator)
#   make lint-infra  sam validate (--lint), cfn-lint + cfn-lint-serverless, asl-validator, checkov, parliament, sam build
.PHONY: tools lint-infra

tools: ## install the infrastructure lint tools into .tools/ and node_modules/ (idempotent)
	@bash scripts/lint_infra.sh tools

lint-infra: setup ## sam validate --lint, cfn-lint (+serverless rules), asl-validator, checkov, parliament, sam build
	@bash scripts/lint_infra.sh lint
