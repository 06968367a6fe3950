"""Runs Airbyte's `source-klaviyo` connector against another base URL (run by bench/airbyte.py).

Run with the Python of the connector's own venv (not the project's):

    /tmp/airbyte-venv/bin/python bench/airbyte_runner.py http://127.0.0.1:PORT read --config c.json --catalog k.json

The connector's manifest hard-codes `url_base: "https://a.klaviyo.com/api/"` and its spec has no
base-URL setting. Of the ways to point it elsewhere, this one changes the least: the installed
package is left as it is, and only the one `url_base` string of the manifest is replaced in
memory, when `YamlDeclarativeSource` reads it. Everything else (the revision header, slicing,
pagination, error handler, `api_budget`, concurrency) is the connector's own. The `api_budget`
matches `^/api/events`, a path that stays the same under the emulator's base URL. A TLS-stripping
proxy or a requests adapter rewriting hosts would add a layer of our own that the timing would include.
"""

import sys
from typing import Any

from airbyte_cdk.sources.declarative.yaml_declarative_source import YamlDeclarativeSource

KLAVIYO_URL_BASE = "https://a.klaviyo.com/api/"


def patch_url_base(base_url: str) -> None:
    """Makes every manifest the CDK reads from a package use `base_url` + "/api/"."""
    read = YamlDeclarativeSource._read_and_parse_yaml_file

    def read_patched(self: YamlDeclarativeSource, path_to_yaml_file: str) -> Any:
        manifest = read(self, path_to_yaml_file)
        requester = manifest["definitions"]["requester"]
        if requester["url_base"] != KLAVIYO_URL_BASE:
            raise SystemExit(f"the connector's url_base is {requester['url_base']!r}, not {KLAVIYO_URL_BASE!r}: check the runner")
        requester["url_base"] = base_url.rstrip("/") + "/api/"
        return manifest

    YamlDeclarativeSource._read_and_parse_yaml_file = read_patched  # type: ignore[method-assign]


def main() -> None:
    if len(sys.argv) < 3 or not sys.argv[1].startswith("http"):
        raise SystemExit("usage: airbyte_runner.py BASE_URL read --config CONFIG --catalog CATALOG")
    patch_url_base(sys.argv[1])
    del sys.argv[1]
    from source_klaviyo.run import run

    run()


if __name__ == "__main__":
    main()
