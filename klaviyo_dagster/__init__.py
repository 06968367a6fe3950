"""Dagster orchestration of many Klaviyo accounts (optional: `pip install -r requirements-dagster.txt`).

`klaviyo_dagster.definitions` is the code location (`dagster dev -m klaviyo_dagster.definitions`);
`accounts.py` reads the accounts file, `assets.py` turns the source's tables into assets
partitioned by account (dagster-dlt), `jobs.py` builds the job, its retries and the daily
schedule. Importing this package has no side effect; importing `definitions` reads the file.
"""
