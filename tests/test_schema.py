"""The migrations build exactly the declared schema (``warnd/db/schema.sql``).

One fresh database is built by ``migrate()``, another from schema.sql, and the two are compared
as catalog facts: what a reader of schema.sql relies on, rendered by PostgreSQL itself
(``format_type``, ``pg_get_constraintdef``, ``pg_get_indexdef`` …) so that two spellings of the
same definition compare equal. Owners and privileges are not compared: they belong to whoever
ran the SQL, not to the schema. ``schema_migrations`` is compared like any table: migrate.py
creates it, and schema.sql declares it so that the document describes every table a warnd
database has.
"""

from __future__ import annotations

import difflib
import re
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from warnd.db.migrate import declared_schema, migrate
from warnd.db.pool import connect, recreate_database

# Every schema that is not PostgreSQL's own: warnd uses only public, but an object created
# elsewhere by either side must still show up as a difference.
USER_SCHEMA = "n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'"

# Objects that belong to an extension are the extension's, not the schema's.
NOT_FROM_EXTENSION = """NOT EXISTS (
    SELECT FROM pg_depend e WHERE e.classid = {catalog}::regclass AND e.objid = {oid}
                              AND e.deptype = 'e')"""

Facts = dict[str, str]


def _unqualified(definition: str) -> str:
    # Both databases hold everything in public; the prefix only makes lines longer.
    return re.sub(r"\bpublic\.", "", definition)


async def _relations(conn: asyncpg.Connection, facts: Facts) -> None:
    kinds = {"r": "table", "p": "partitioned table", "v": "view", "m": "materialized view",
             "c": "composite type", "f": "foreign table"}  # fmt: skip
    # Catalog flags are of type "char", which asyncpg returns as bytes: read them as text.
    rows = await conn.fetch(
        f"""SELECT c.oid::regclass::text AS name, c.relkind::text, c.relpersistence::text,
                   c.reloptions, c.relrowsecurity, c.relforcerowsecurity, c.relreplident::text,
                   CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END AS query
              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE {USER_SCHEMA} AND c.relkind IN ('r', 'p', 'v', 'm', 'c', 'f')
               AND {NOT_FROM_EXTENSION.format(catalog="'pg_class'", oid="c.oid")}"""
    )
    for r in rows:
        traits = [kinds[r["relkind"]]]
        if r["relpersistence"] != "p":
            traits.append({"u": "unlogged", "t": "temporary"}[r["relpersistence"]])
        if r["reloptions"]:
            traits.append(f"with ({', '.join(r['reloptions'])})")
        if r["relrowsecurity"]:
            traits.append("row level security" + (" forced" if r["relforcerowsecurity"] else ""))
        if r["relreplident"] != "d":
            traits.append(f"replica identity {r['relreplident']}")
        if r["query"] is not None:
            traits.append("as " + " ".join(r["query"].split()))
        facts[r["name"]] = _unqualified(", ".join(traits))


async def _columns(conn: asyncpg.Connection, facts: Facts) -> None:
    rows = await conn.fetch(
        f"""SELECT c.oid::regclass::text AS rel, a.attname,
                   format_type(a.atttypid, a.atttypmod) AS type, a.attnotnull,
                   a.attidentity::text, a.attgenerated::text,
                   pg_get_expr(d.adbin, d.adrelid) AS expression,
                   CASE WHEN a.attcollation <> t.typcollation THEN co.collname END AS collation
              FROM pg_attribute a
              JOIN pg_class c ON c.oid = a.attrelid
              JOIN pg_namespace n ON n.oid = c.relnamespace
              JOIN pg_type t ON t.oid = a.atttypid
              LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
              LEFT JOIN pg_collation co ON co.oid = a.attcollation
             WHERE {USER_SCHEMA} AND c.relkind IN ('r', 'p', 'v', 'm', 'c', 'f')
               AND a.attnum > 0 AND NOT a.attisdropped
               AND {NOT_FROM_EXTENSION.format(catalog="'pg_class'", oid="c.oid")}
             ORDER BY rel, a.attnum"""
    )
    order: dict[str, list[str]] = {}
    for r in rows:
        column = r["type"]
        if r["collation"]:
            column += f' COLLATE "{r["collation"]}"'
        if r["attnotnull"]:
            column += " NOT NULL"
        if r["attgenerated"]:
            stored = {"s": "STORED", "v": "VIRTUAL"}[r["attgenerated"]]
            column += f" GENERATED ALWAYS AS ({r['expression']}) {stored}"
        elif r["expression"] is not None:
            column += f" DEFAULT {r['expression']}"
        if r["attidentity"]:
            column += f" GENERATED {'ALWAYS' if r['attidentity'] == 'a' else 'BY DEFAULT'}"
            column += " AS IDENTITY"
        facts[f"{r['rel']}, column {r['attname']}"] = _unqualified(column)
        order.setdefault(r["rel"], []).append(r["attname"])
    # Order apart from the columns themselves, so that a column out of place is one difference;
    # a line each, so that the difference shows as a diff of where it moved.
    for rel, names in order.items():
        facts[f"{rel}, column order"] = "\n".join(names)


async def _constraints(conn: asyncpg.Connection, facts: Facts) -> None:
    # PostgreSQL 18 also catalogues each NOT NULL as a named constraint (<table>_<column>_not_null),
    # so there the names of those are compared too; on 15 NOT NULL is only a column fact.
    rows = await conn.fetch(
        f"""SELECT CASE WHEN con.conrelid <> 0 THEN con.conrelid::regclass::text
                        ELSE con.contypid::regtype::text END AS owner,
                   con.conname, pg_get_constraintdef(con.oid) AS definition
              FROM pg_constraint con JOIN pg_namespace n ON n.oid = con.connamespace
             WHERE {USER_SCHEMA}"""
    )
    for r in rows:
        facts[f"{r['owner']}, constraint {r['conname']}"] = _unqualified(r["definition"])


async def _indexes_and_statistics(conn: asyncpg.Connection, facts: Facts) -> None:
    rows = await conn.fetch(
        f"""SELECT i.indrelid::regclass::text AS rel, c.relname, pg_get_indexdef(c.oid) AS def
              FROM pg_index i
              JOIN pg_class c ON c.oid = i.indexrelid
              JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE {USER_SCHEMA}
               AND {NOT_FROM_EXTENSION.format(catalog="'pg_class'", oid="c.oid")}"""
    )
    for r in rows:
        facts[f"{r['rel']}, index {r['relname']}"] = _unqualified(r["def"])
    for r in await conn.fetch(
        f"""SELECT s.stxrelid::regclass::text AS rel, s.stxname,
                   pg_get_statisticsobjdef(s.oid) AS def
              FROM pg_statistic_ext s JOIN pg_namespace n ON n.oid = s.stxnamespace
             WHERE {USER_SCHEMA}"""
    ):
        facts[f"{r['rel']}, statistics {r['stxname']}"] = _unqualified(r["def"])


async def _triggers_rules_policies(conn: asyncpg.Connection, facts: Facts) -> None:
    for r in await conn.fetch(
        f"""SELECT t.tgrelid::regclass::text AS rel, t.tgname, pg_get_triggerdef(t.oid) AS def,
                   t.tgenabled::text
              FROM pg_trigger t
              JOIN pg_class c ON c.oid = t.tgrelid
              JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE {USER_SCHEMA} AND NOT t.tgisinternal"""
    ):
        state = "" if r["tgenabled"] == "O" else f" (enabled: {r['tgenabled']})"
        facts[f"{r['rel']}, trigger {r['tgname']}"] = _unqualified(r["def"]) + state
    for r in await conn.fetch(
        """SELECT format('%I.%I', schemaname, tablename)::regclass::text AS rel, rulename,
                  definition
             FROM pg_rules WHERE schemaname !~ '^pg_' AND schemaname <> 'information_schema'"""
    ):
        facts[f"{r['rel']}, rule {r['rulename']}"] = _unqualified(" ".join(r["definition"].split()))
    for r in await conn.fetch(
        """SELECT format('%I.%I', schemaname, tablename)::regclass::text AS rel, policyname,
                  concat_ws(' ', permissive, 'FOR', cmd, 'TO', roles::text, 'USING', qual,
                            'WITH CHECK', with_check) AS def
             FROM pg_policies
            WHERE schemaname !~ '^pg_' AND schemaname <> 'information_schema'"""
    ):
        facts[f"{r['rel']}, policy {r['policyname']}"] = _unqualified(r["def"])


async def _functions(conn: asyncpg.Connection, facts: Facts) -> None:
    rows = await conn.fetch(
        f"""SELECT p.oid::regprocedure::text AS signature, p.prokind::text,
                   CASE WHEN p.prokind <> 'a' THEN pg_get_functiondef(p.oid) END AS def
              FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE {USER_SCHEMA}
               AND {NOT_FROM_EXTENSION.format(catalog="'pg_proc'", oid="p.oid")}"""
    )
    kind = {"f": "function", "p": "procedure", "a": "aggregate", "w": "window function"}
    for r in rows:
        # The whole definition, body included and kept verbatim: a body is code, and a changed
        # space inside a string literal changes what it does.
        facts[f"{kind[r['prokind']]} {r['signature']}"] = _unqualified((r["def"] or "").strip())


async def _sequences(conn: asyncpg.Connection, facts: Facts) -> None:
    rows = await conn.fetch(
        f"""SELECT s.seqrelid::regclass::text AS name, format_type(s.seqtypid, NULL) AS type,
                   s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcache, s.seqcycle,
                   c.relpersistence::text,
                   (SELECT format('%s.%I', d.refobjid::regclass, a.attname)
                      FROM pg_depend d
                      JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                     WHERE d.classid = 'pg_class'::regclass AND d.objid = s.seqrelid
                       AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
                   ) AS owned_by
              FROM pg_sequence s
              JOIN pg_class c ON c.oid = s.seqrelid
              JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE {USER_SCHEMA}
               AND {NOT_FROM_EXTENSION.format(catalog="'pg_class'", oid="c.oid")}"""
    )
    for r in rows:
        facts[f"sequence {r['name']}"] = _unqualified(
            f"{r['type']} start {r['seqstart']} increment {r['seqincrement']}"
            f" min {r['seqmin']} max {r['seqmax']} cache {r['seqcache']}"
            + (" cycle" if r["seqcycle"] else "")
            + (" unlogged" if r["relpersistence"] == "u" else "")
            + f" owned by {r['owned_by'] or 'none'}"
        )


async def _types(conn: asyncpg.Connection, facts: Facts) -> None:
    # Enums, domains and ranges; composite types are relations (kind 'c') and are read with them.
    rows = await conn.fetch(
        f"""SELECT t.oid::regtype::text AS name, t.typtype::text,
                   format_type(t.typbasetype, t.typtypmod) AS base, t.typnotnull, t.typdefault,
                   (SELECT string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder)
                      FROM pg_enum e WHERE e.enumtypid = t.oid) AS labels,
                   (SELECT format_type(r.rngsubtype, NULL)
                      FROM pg_range r WHERE r.rngtypid = t.oid) AS subtype
              FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
             WHERE {USER_SCHEMA} AND t.typtype IN ('e', 'd', 'r')
               AND {NOT_FROM_EXTENSION.format(catalog="'pg_type'", oid="t.oid")}"""
    )
    for r in rows:
        if r["typtype"] == "e":
            facts[f"enum {r['name']}"] = r["labels"] or ""
        elif r["typtype"] == "d":
            domain = r["base"] + (" NOT NULL" if r["typnotnull"] else "")
            if r["typdefault"] is not None:
                domain += f" DEFAULT {r['typdefault']}"
            facts[f"domain {r['name']}"] = _unqualified(domain)
        else:
            facts[f"range {r['name']}"] = r["subtype"] or ""


async def _extensions_schemas_comments(conn: asyncpg.Connection, facts: Facts) -> None:
    for r in await conn.fetch("SELECT extname, extversion FROM pg_extension"):
        facts[f"extension {r['extname']}"] = r["extversion"]
    for r in await conn.fetch(f"SELECT nspname FROM pg_namespace n WHERE {USER_SCHEMA}"):
        facts[f"schema {r['nspname']}"] = ""
    # COMMENT ON: text a reader of the database sees; either side adding one is a difference.
    for r in await conn.fetch(
        """SELECT o.type, o.identity, d.description
             FROM pg_description d, pg_identify_object(d.classoid, d.objoid, d.objsubid) o
            WHERE COALESCE(o.schema, CASE o.type WHEN 'schema' THEN o.identity END) !~ '^pg_'
              AND COALESCE(o.schema, o.identity) <> 'information_schema'"""
    ):
        facts[f"comment on {r['type']} {_unqualified(r['identity'])}"] = r["description"]


async def catalog_facts(conn: asyncpg.Connection) -> Facts:
    """What the database's schema consists of, as named facts in PostgreSQL's own rendering."""
    facts: Facts = {}
    readers = (
        _relations,
        _columns,
        _constraints,
        _indexes_and_statistics,
        _triggers_rules_policies,
        _functions,
        _sequences,
        _types,
        _extensions_schemas_comments,
    )
    for read in readers:
        await read(conn, facts)
    return facts


def describe_drift(migrated: Facts, declared: Facts) -> str:
    """Where schema.sql and the migrations disagree, in words that say which file to look at."""

    def show(facts: Facts, key: str, mark: str) -> list[str]:
        value = facts[key]
        first, *rest = value.splitlines() or [""]
        return [f"  {mark} {key}: {first}", *(f"      {line}" for line in rest)]

    lacking = sorted(migrated.keys() - declared.keys())
    extra = sorted(declared.keys() - migrated.keys())
    changed = sorted(k for k in migrated.keys() & declared.keys() if migrated[k] != declared[k])
    parts = []
    if lacking:
        parts.append("Built by the migrations, missing from schema.sql:")
        parts += [line for key in lacking for line in show(migrated, key, "-")]
    if extra:
        parts.append("In schema.sql, not built by the migrations:")
        parts += [line for key in extra for line in show(declared, key, "+")]
    if changed:
        parts.append("Defined differently (- migrations, + schema.sql):")
        for key in changed:
            before, after = migrated[key].splitlines(), declared[key].splitlines()
            if len(before) == len(after) == 1:
                parts += show(migrated, key, "-") + show(declared, key, "+")
            else:
                parts.append(f"  {key}:")
                diff = difflib.unified_diff(before, after, "migrations", "schema.sql", lineterm="")
                parts += [f"      {line}" for line in diff]
    if not parts:
        return ""
    return "\n".join(
        [
            "warnd/db/schema.sql does not describe what warnd/db/migrations/ build. If a "
            "migration is new, write its change into schema.sql; if schema.sql was edited alone, "
            "the change needs a new numbered migration.",
            *parts,
        ]
    )


async def _apply_declared(conn: asyncpg.Connection) -> None:
    sql = declared_schema()
    try:
        await conn.execute(sql)
    except asyncpg.PostgresError as exc:
        position = getattr(exc, "position", None)  # set for syntax errors: 1-based, in characters
        where = f" (line {sql.count(chr(10), 0, int(position)) + 1})" if position else ""
        failure = f"warnd/db/schema.sql does not apply{where}: {exc}"
    else:
        return
    pytest.fail(failure, pytrace=False)  # outside ``except``: the driver's traceback is noise


async def _facts_after(
    server_url: str, name: str, build: Callable[[asyncpg.Connection], Awaitable[object]]
) -> Facts:
    # From template0, so that nothing added to template1 on a shared server takes part.
    conn = await connect(await recreate_database(server_url, name, template="template0"))
    try:
        await build(conn)
        return await catalog_facts(conn)
    finally:
        await conn.close()


async def test_migrations_build_the_declared_schema(server_url: str) -> None:
    suffix = uuid.uuid4().hex[:12]
    names = [f"warnd_migrated_{suffix}", f"warnd_declared_{suffix}"]
    try:
        migrated = await _facts_after(server_url, names[0], migrate)
        declared = await _facts_after(server_url, names[1], _apply_declared)
    finally:
        admin = await connect(server_url)
        try:
            for name in names:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
    assert "deliveries, column id" in migrated, "the comparison saw no tables: is the query wrong?"
    drift = describe_drift(migrated, declared)
    if drift:
        pytest.fail(drift, pytrace=False)


def test_drift_names_each_side() -> None:
    migrated = {
        "deliveries, index deliveries_task": "CREATE INDEX deliveries_task ON deliveries …",
        "deliveries, column step": "integer",
        "function f()": "BEGIN\n  RETURN 1;\nEND",
    }
    declared = {
        "deliveries, column step": "bigint",
        "deliveries, column stage": "integer",
        "function f()": "BEGIN\n  RETURN 2;\nEND",
    }
    drift = describe_drift(migrated, declared)
    assert "missing from schema.sql:\n  - deliveries, index deliveries_task: CREATE INDEX" in drift
    assert "not built by the migrations:\n  + deliveries, column stage: integer" in drift
    assert "  - deliveries, column step: integer\n  + deliveries, column step: bigint" in drift
    assert "      -  RETURN 1;\n      +  RETURN 2;" in drift
    assert describe_drift(migrated, dict(migrated)) == ""
