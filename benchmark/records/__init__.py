"""Run records: one JSON file per finished run, the single source of truth for every reported number.

A record is written once, atomically, at the end of a run (``write_record``) and read back by the
report (``load_records``), which skips unreadable or schema-invalid files with a warning instead of
failing, so one bad file never hides the other results.
"""
