"""Pure policy logic shared by the CLI and tests: evaluating AuthorizationPolicies."""
