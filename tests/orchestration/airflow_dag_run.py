"""Run by test_airflow_dag.py in a subprocess whose environment configures Airflow (AIRFLOW_HOME,
DAGS_FOLDER holding deploy/airflow/klaviyo_dag.py, the accounts file, the keys): parses the DAG
file, runs `dag.test()` and prints one JSON line with the task ids and each task's final state."""

import importlib.util
import json
import os
import sys


def main() -> None:
    path = os.path.join(os.environ["AIRFLOW__CORE__DAGS_FOLDER"], "klaviyo_dag.py")
    spec = importlib.util.spec_from_file_location("klaviyo_dag", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = module.dag_object
    report = {"tasks": sorted(t.task_id for t in dag.tasks)}
    if "--parse-only" not in sys.argv:
        run = dag.test()
        report["state"] = str(run.state)
        report["task_states"] = {ti.task_id: str(ti.state) for ti in run.get_task_instances()}
    print("RESULT " + json.dumps(report))


if __name__ == "__main__":
    main()
