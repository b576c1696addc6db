"""The orchestrator: reconciles apps, volumes and snapshots to the controller config."""
