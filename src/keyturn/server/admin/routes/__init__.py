"""The console's route units, one per domain, each built on an AdminContext."""
