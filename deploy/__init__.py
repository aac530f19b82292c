"""Deployment tooling that runs on the developer's machine, never in Lambda: ``make deploy``
(``python -m deploy``), the samconfig.toml profile checks, and serverless.yml's generator."""
