"""Klaviyo's request rules over HTTP: keys, revision, scopes, routes, parameters, cursors."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import pytest

from klaviyo_emulator import Emulator
from tests.emulator.conftest import LIMITED, Http


def error_of(r) -> dict:
    """The single JSON:API error of a response."""
    assert r.headers["Content-Type"] == "application/vnd.api+json"
    errors = r.json()["errors"]
    assert len(errors) == 1
    return errors[0]


# ------------------------------------------------------------------------ keys and revision
@pytest.mark.parametrize("auth", [None, "Klaviyo-API-Key pk_wrong", "Bearer pk_demo",
                                  "pk_demo", "Klaviyo-API-Key "])
def test_missing_or_unknown_key_is_401(http: Http, auth: str | None) -> None:
    r = http.get("/api/metrics/", headers={"Authorization": auth})
    assert r.status_code == 401
    err = error_of(r)
    assert err["code"] == "not_authenticated" and err["status"] == 401


@pytest.mark.parametrize("revision", [None, "", "2023-13-45", "15-10-2023", "2023-10-15x"])
def test_missing_or_malformed_revision_is_400(http: Http, revision: str | None) -> None:
    r = http.get("/api/metrics/", headers={"revision": revision})
    assert r.status_code == 400
    err = error_of(r)
    assert err["code"] == "invalid" and "revision" in err["detail"].lower()


@pytest.mark.parametrize("revision", ["2024-11-01", "2023-10-16", "2026-10-15", "2099-01-15"])
def test_undocumented_revision_is_404(http: Http, revision: str) -> None:
    # Klaviyo answers an undocumented revision 404 since 2024-02-15; 2026-10-15 is real but
    # newer than every revision the emulator holds, so it gets the same loud answer.
    r = http.get("/api/metrics/", headers={"revision": revision})
    assert r.status_code == 404
    err = error_of(r)
    assert err["code"] == "not_found" and revision in err["detail"]


@pytest.mark.parametrize("revision", ["2023-10-15", "2023-10-15.pre", "2026-07-15",
                                      "2026-07-15.pre"])
def test_supported_revisions_are_accepted(http: Http, revision: str) -> None:
    assert http.get("/api/metrics/", headers={"revision": revision}).status_code == 200


@pytest.mark.parametrize("revision,served_as", [("2023-07-15", "2023-10-15"),
                                                ("2024-02-15", "2026-07-15"),
                                                ("2025-01-15", "2026-07-15")])
def test_older_real_revisions_fall_forward(emu: Emulator, http: Http, revision: str,
                                           served_as: str) -> None:
    # A real revision the emulator does not hold is answered as the oldest held revision
    # not older than it (Klaviyo answers a retired revision as a later, supported one).
    flow = next(f for f in emu.account.small["flow"].values() if f["rel"]["flow-actions"])
    path = f"/api/flows/{flow['id']}/flow-actions/"
    got = http.ok(path) if revision == "2023-10-15" else None
    r = http.get(path, headers={"revision": revision})
    assert r.status_code == 200, r.text[:300]
    want = http.get(path, headers={"revision": served_as}).json()
    assert r.json()["data"] == want["data"] and (got is None or got == want)
    has_definition = "definition" in r.json()["data"][0]["attributes"]
    assert has_definition == (served_as == "2026-07-15")


def test_auth_is_checked_before_revision(http: Http) -> None:
    r = http.get("/api/metrics/", headers={"Authorization": None, "revision": None})
    assert r.status_code == 401


def test_restricted_key_scopes(http: Http) -> None:
    limited = {"Authorization": f"Klaviyo-API-Key {LIMITED}"}
    assert http.get("/api/metrics/", headers=limited).status_code == 200
    assert http.get("/api/events/", headers=limited).status_code == 200
    r = http.get("/api/profiles/", headers=limited)
    assert r.status_code == 403
    err = error_of(r)
    assert err["code"] == "permission_denied" and "profiles:read" in err["detail"]
    r = http.get("/api/lists/", headers=limited)
    assert r.status_code == 403 and "list:read" in error_of(r)["detail"]


def test_list_members_need_both_scopes(emu: Emulator, http: Http) -> None:
    lid = next(iter(emu.account.small["list"]))
    r = http.get(f"/api/lists/{lid}/profiles/",
                 headers={"Authorization": f"Klaviyo-API-Key {LIMITED}"})
    detail = error_of(r)["detail"]
    assert r.status_code == 403 and "list:read" in detail and "profiles:read" in detail


# ------------------------------------------------------------------------ routes and methods
def test_unknown_path_is_404_json_api(http: Http) -> None:
    for path in ("/api/nothing/", "/api/event", "/api/events/x/y/", "/elsewhere"):
        r = http.get(path)
        assert r.status_code == 404
        assert error_of(r)["code"] == "not_found"


@pytest.mark.parametrize("revision", ["2023-10-15", "2026-07-15"])
def test_paths_route_with_and_without_the_trailing_slash(emu: Emulator, revision: str) -> None:
    # Newer specs drop the trailing slash; Klaviyo routes both forms in every revision.
    http = Http(emu, revision)
    lid = next(iter(emu.account.small["list"]))
    for path in ("/api/metrics", f"/api/lists/{lid}/profiles"):
        slash, bare = http.ok(path + "/", {"sort": "-joined_group_at"} if "profiles" in path
                              else None), http.ok(path, {"sort": "-joined_group_at"}
                                                  if "profiles" in path else None)
        assert slash["data"] == bare["data"] and bare["data"]
        assert bare["links"]["self"].split("?")[0].endswith(path)


def test_unknown_parent_id_is_404(http: Http) -> None:
    r = http.get("/api/lists/NOPE00/profiles/")
    assert r.status_code == 404 and error_of(r)["code"] == "not_found"


def test_wrong_method_is_405(http: Http) -> None:
    r = http.session.delete(http.base + "/api/events/", headers=http.headers)
    assert r.status_code == 405 and r.headers["Allow"] == "GET"
    r = http.session.get(http.base + "/api/metric-aggregates/", headers=http.headers)
    assert r.status_code == 405 and r.headers["Allow"] == "POST"
    assert error_of(r)["code"] == "method_not_allowed"


# ------------------------------------------------------------------------ parameters
@pytest.mark.parametrize("path,params,parameter", [
    ("/api/events/", {"page[size]": "50"}, "page[size]"),
    ("/api/metrics/", {"page[size]": "5"}, "page[size]"),
    ("/api/lists/", {"page[size]": "5"}, "page[size]"),
    ("/api/profiles/", {"page[size]": "0"}, "page[size]"),
    ("/api/profiles/", {"page[size]": "101"}, "page[size]"),
    ("/api/profiles/", {"page[size]": "ten"}, "page[size]"),
    ("/api/flows/", {"page[size]": "51"}, "page[size]"),
    ("/api/events/", {"fields[event]": "datetime,nope"}, "fields[event]"),
    ("/api/events/", {"fields[flow]": "name"}, "fields[flow]"),
    ("/api/events/", {"include": "metric,campaign"}, "include"),
    ("/api/templates/", {"include": "tags"}, "include"),
    ("/api/events/", {"sort": "created"}, "sort"),
    ("/api/lists/", {"sort": "updated"}, "sort"),
    ("/api/metrics/", {"sort": "name"}, "sort"),
    ("/api/profiles/", {"additional-fields[profile]": "subscriptions,lists"},
     "additional-fields[profile]"),
    ("/api/events/", {"additional-fields[profile]": "subscriptions"},
     "additional-fields[profile]"),
    ("/api/events/", {"foo": "bar"}, "foo"),
    ("/api/events/", {"page[cursor]": "not-a-cursor"}, "page[cursor]"),
    ("/api/events/", [("sort", "datetime"), ("sort", "-datetime")], "sort"),
])
def test_invalid_parameters_are_400_naming_the_parameter(http: Http, path: str, params,
                                                        parameter: str) -> None:
    r = http.get(path, params)
    assert r.status_code == 400, r.text[:200]
    err = error_of(r)
    assert err["code"] == "invalid" and err["source"] == {"parameter": parameter}
    assert err["detail"]


@pytest.mark.parametrize("path,params,count", [
    ("/api/profiles/", {}, 20), ("/api/profiles/", {"page[size]": "100"}, 100),
    ("/api/profiles/", {"page[size]": "1"}, 1), ("/api/events/", {}, 200),
    ("/api/templates/", {}, 10), ("/api/lists/", {}, 10), ("/api/segments/", {}, 10),
    ("/api/campaigns/", {"filter": "equals(messages.channel,'email')"}, 10),
])
def test_page_sizes(http: Http, path: str, params: dict, count: int) -> None:
    doc = http.ok(path, params)
    assert len(doc["data"]) == count and doc["links"]["next"]


def test_cursor_must_be_issued_for_the_same_query(http: Http) -> None:
    doc = http.ok("/api/profiles/", {"sort": "updated", "page[size]": "5"})
    cursor = dict(parse_qsl(urlsplit(doc["links"]["next"]).query))["page[cursor]"]
    assert http.get("/api/profiles/", {"sort": "updated", "page[size]": "5",
                                       "page[cursor]": cursor}).status_code == 200
    for other in ({"sort": "-updated", "page[size]": "5"}, {"sort": "updated"},
                  {"sort": "updated", "page[size]": "5", "filter":
                   "greater-than(updated,2020-01-01T00:00:00Z)"}):
        r = http.get("/api/profiles/", {**other, "page[cursor]": cursor})
        assert r.status_code == 400 and error_of(r)["source"] == {"parameter": "page[cursor]"}
    forged = cursor[:-2] + ("AA" if not cursor.endswith("AA") else "BB")
    r = http.get("/api/profiles/", {"sort": "updated", "page[size]": "5", "page[cursor]": forged})
    assert r.status_code == 400
    r = http.get("/api/events/", {"page[cursor]": cursor})
    assert r.status_code == 400


def test_links_next_is_absolute_and_keeps_the_query(http: Http) -> None:
    params = {"filter": "greater-than(updated,2020-01-01T00:00:00+00:00)", "sort": "-updated",
              "fields[profile]": "email,updated", "additional-fields[profile]": "subscriptions",
              "page[size]": "7"}
    r = http.get("/api/profiles/", params)
    doc = r.json()
    assert doc["links"]["self"] == r.url
    nxt = urlsplit(doc["links"]["next"])
    assert f"{nxt.scheme}://{nxt.netloc}" == http.base and nxt.path == "/api/profiles/"
    query = dict(parse_qsl(nxt.query))
    cursor = query.pop("page[cursor]")
    assert query == params and cursor
    assert len(http.ok(doc["links"]["next"])["data"]) == 7
    events = http.ok("/api/events/", {"include": "metric", "fields[metric]": "name",
                                      "sort": "datetime"})
    query = dict(parse_qsl(urlsplit(events["links"]["next"]).query))
    assert {k: query[k] for k in ("include", "fields[metric]", "sort")} == {
        "include": "metric", "fields[metric]": "name", "sort": "datetime"}


def test_last_page_has_null_next(http: Http) -> None:
    docs = list(http.pages("/api/templates/"))
    assert len(docs) == 3
    assert all(d["links"]["next"] for d in docs[:-1]) and docs[-1]["links"]["next"] is None
    assert all(d["links"]["self"] for d in docs)


# ------------------------------------------------------------------------ sparse fields etc.
def test_sparse_fieldsets_and_additional_fields(http: Http) -> None:
    doc = http.ok("/api/profiles/", {"fields[profile]": "email,location.city"})
    for p in doc["data"]:
        assert set(p["attributes"]) == {"email", "location"}
        assert set(p["attributes"]["location"]) == {"city"}
    plain = http.ok("/api/profiles/")["data"][0]["attributes"]
    assert "subscriptions" not in plain and "predictive_analytics" not in plain
    extra = http.ok("/api/profiles/", {"additional-fields[profile]": "predictive_analytics"})
    attrs = extra["data"][0]["attributes"]
    assert "predictive_analytics" in attrs and "subscriptions" not in attrs
    ev = http.ok("/api/events/", {"fields[event]": "datetime"})["data"][0]
    assert set(ev["attributes"]) == {"datetime"} and ev["relationships"]["metric"]["data"]


def test_included_resources_match_relationships(http: Http) -> None:
    doc = http.ok("/api/events/", {"include": "metric,profile"})
    wanted = {(rel["data"]["type"], rel["data"]["id"]) for e in doc["data"]
              for rel in e["relationships"].values()}
    got = [(i["type"], i["id"]) for i in doc["included"]]
    assert len(got) == len(set(got)) and set(got) == wanted
    camp = http.ok("/api/campaigns/", {"filter": "equals(messages.channel,'email')",
                                       "include": "campaign-messages,tags"})
    wanted = {(d["type"], d["id"]) for c in camp["data"] for rel in c["relationships"].values()
              for d in rel["data"]}
    assert {(i["type"], i["id"]) for i in camp["included"]} == wanted
    assert "included" not in http.ok("/api/events/")
