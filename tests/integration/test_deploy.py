"""`dlt deploy klaviyo_pipeline.py github-action|airflow-composer` reads the pipeline's name and
working dir from the script's `dlt.pipeline(...)` call; it refuses values it cannot evaluate.
(The deploy itself fetches dlt's templates from GitHub, which the tests do not reach.)"""

from dlt._workspace.cli._deploy_command_helpers import get_visitors, parse_pipeline_info

from tests.conftest import REPO


def test_dlt_deploy_reads_the_pipeline_name_from_the_script() -> None:
    script = REPO / "klaviyo_pipeline.py"
    assert parse_pipeline_info(get_visitors(script.read_text(encoding="utf-8"), str(script))) == [("klaviyo", None)]
