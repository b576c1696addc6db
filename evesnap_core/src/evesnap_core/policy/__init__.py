"""Local schedules and retention (``evesnap policy``): a policy file, a pure planner,
an executor that applies a plan through the orchestrator. See docs/policies.md."""
