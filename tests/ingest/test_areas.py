"""Areas and supervisors: a resident's place, and who sees everything in theirs."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from alerts.directory import load_directory
from alerts.model import ContactId, area_within
from bedwatch.migrate import migrate
from bedwatch.site import SiteError, parse_site
from ingest.records import ResidentId
from ingest.registry import store_site
from tests.support import query, settings_for

SITE = """
[[contacts]]
id = "c-zhang"
name = "张护理员"
role = "care_staff"

[[contacts]]
id = "s-kangle"
name = "康乐居委 主管"
role = "supervisor"
areas = ["kangjian/kangle"]

[[contacts]]
id = "s-street"
name = "街道 主管"
role = "supervisor"
areas = ["*"]

[[residents]]
id = "r-1"
name = "王阿婆"
area = "kangjian/kangle/12"
care_team = ["c-zhang"]

[[residents]]
id = "r-2"
name = "李阿公"
area = "kangjian/kangle"

[[residents]]
id = "r-3"
name = "赵阿姨"
area = "kangjian/kangleyuan/3"

[[residents]]
id = "r-4"
name = "钱老伯"
"""


def test_areas_and_supervisors_parse() -> None:
    site = parse_site(SITE)
    assert [r.area for r in site.residents] == [
        "kangjian/kangle/12",
        "kangjian/kangle",
        "kangjian/kangleyuan/3",
        "",
    ]
    assert site.contacts[1].areas == ("kangjian/kangle",)
    assert site.contacts[0].areas == ()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (('areas = ["kangjian/kangle"]', "areas = []"), "supervisor needs a non-empty list"),
        (('areas = ["kangjian/kangle"]', ""), "supervisor needs a non-empty list"),
        (('role = "care_staff"', 'role = "care_staff"\nareas = ["x"]'), "only a supervisor"),
        (('area = "kangjian/kangle/12"', 'area = "kangjian//12"'), "not an area path"),
        (('area = "kangjian/kangle/12"', 'area = "/kangjian"'), "not an area path"),
        (('area = "kangjian/kangle/12"', 'area = "kangjian/ kangle"'), "not an area path"),
        (('area = "kangjian/kangle/12"', "area = 12"), "expected an area path"),
        (('area = "kangjian/kangle/12"', 'area = "*"'), "not an area path"),
        (('care_team = ["c-zhang"]', 'care_team = ["s-kangle"]'), "names supervisor"),
    ],
)
def test_area_errors_name_the_entry(change: tuple[str, str], message: str) -> None:
    old, new = change
    assert old in SITE
    with pytest.raises(SiteError, match=message):
        parse_site(SITE.replace(old, new, 1))


CASES = [
    ("kangjian/kangle/12", ("kangjian/kangle",), True),
    ("kangjian/kangle", ("kangjian/kangle",), True),
    ("kangjian/kangleyuan/3", ("kangjian/kangle",), False),  # a prefix of the name is not beneath
    ("kangjian", ("kangjian/kangle",), False),
    ("", ("kangjian",), False),
    ("", ("*",), True),
    ("a/b", ("x", "a"), True),
]


@pytest.mark.parametrize(("area", "areas", "inside"), CASES)
def test_area_within_in_python(area: str, areas: tuple[str, ...], inside: bool) -> None:
    assert area_within(area, areas) is inside


def test_supervisors_see_and_act_for_their_areas(database_url: str) -> None:
    migrate(settings_for(database_url, "mqtt://127.0.0.1:1", "x"))
    with psycopg.connect(database_url) as conn, conn.transaction():
        store_site(conn, parse_site(SITE))
    # The database's area_within agrees with the Python one, case by case.
    for area, areas, inside in CASES:
        [(got,)] = query(database_url, "SELECT area_within(%s, %s)", area, list(areas))
        assert got is inside, (area, areas)
    seen = query(
        database_url,
        "SELECT contact_id, array_agg(resident_id ORDER BY resident_id) FROM contact_residents"
        " GROUP BY contact_id ORDER BY contact_id",
    )
    assert seen == [
        ("c-zhang", ["r-1"]),
        ("s-kangle", ["r-1", "r-2"]),
        ("s-street", ["r-1", "r-2", "r-3", "r-4"]),
    ]

    async def directory_says() -> list[bool]:
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            found = await load_directory(conn)
        return [
            found.may_act(ResidentId(r), ContactId(c))
            for r, c in [("r-1", "s-kangle"), ("r-3", "s-kangle"), ("r-4", "s-street"),
                         ("r-1", "c-zhang"), ("r-2", "c-zhang")]
        ]  # fmt: skip

    assert asyncio.run(directory_says()) == [True, False, True, True, False]
