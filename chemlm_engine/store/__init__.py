"""Where runs live: one SQLite database (runs, per-epoch rows, named result tables, per-molecule rows) with a
schema version and migrations, and the artifacts folder beside it. Knows nothing of what a job's settings mean:
the run summary for tables is :func:`chemlm_engine.compare.run_summary`."""
from .runs import ACTIVE_STATUSES, RUN_STATUSES, RunRecord, RunStore, default_home
from .schema import SCHEMA_VERSION, Kinds, Tables

__all__ = ["ACTIVE_STATUSES", "RUN_STATUSES", "RunRecord", "RunStore", "default_home", "SCHEMA_VERSION", "Kinds",
           "Tables"]
